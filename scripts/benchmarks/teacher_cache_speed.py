"""Benchmark: a student update from the teacher cache vs with M on-the-fly teachers vs plain training.

One process, one fixed batch of ``--sentences`` × ``--length`` target tokens, fairseq transformers (the student
and M teachers of the same architecture, random weights) over a V-word dictionary. Each step is a whole update:
student forward, loss, backward, Adam step. Variants, interleaved (each of ``--repeats`` rounds times
``--inner`` steps of every variant, the order rotating), ratios to the plain step *of the same round*:

* ``plain``: label-smoothed cross-entropy on the references (ε = 0.1) — ordinary training;
* ``online M=m``: the M teachers run teacher-forced (no grad), then the Proxy reverse-KL loss
  (``proxy_target`` + ``proxy_dirichlet_loss``, what ``rkl_dirichlet_proxy_distillation`` computes);
* ``cache``: the batch's rows are read from a memory-mapped cache file (``shared.teacher_cache`` record with
  k = ``--topk``, written once before timing), then ``cached_proxy_target`` + ``cached_proxy_dirichlet_loss``.

Also printed: the cache's bytes per token and the time to build it (teachers + ``build_record``) as a multiple
of one teacher's forward pass over the same batch (process CPU time). The torch thread count is fixed (``--threads``).

    python scripts/benchmarks/teacher_cache_speed.py [--v 8000] [--ms 3,10] [--topk 64] [--repeats 5] [--json OUT]

Issue 15 target: cache ≤ 1.2× plain training.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rows import row, summary, write_rows  # noqa: E402
from shared.dirichlet import proxy_target  # noqa: E402
from shared.losses import proxy_dirichlet_loss  # noqa: E402
from shared.teacher_cache import (  # noqa: E402
    CacheLayout,
    TeacherCacheRecord,
    build_record,
    bytes_per_position,
    cached_proxy_dirichlet_loss,
    cached_proxy_target,
)


def build_models(v: int, count: int, dim: int, layers: int, seed: int) -> tuple[List[torch.nn.Module], object]:
    from fairseq.data import Dictionary
    from fairseq.models.transformer import TransformerModel, base_architecture

    d = Dictionary()
    for i in range(v - len(d)):
        d.add_symbol(f"w{i}")
    task = Namespace(source_dictionary=d, target_dictionary=d)
    args = Namespace(encoder_embed_dim=dim, encoder_ffn_embed_dim=4 * dim, encoder_layers=layers, encoder_attention_heads=4,
                     decoder_embed_dim=dim, decoder_ffn_embed_dim=4 * dim, decoder_layers=layers, decoder_attention_heads=4,
                     share_decoder_input_output_embed=True, dropout=0.0, max_source_positions=1024, max_target_positions=1024)
    base_architecture(args)
    models = []
    for i in range(count):
        torch.manual_seed(seed + i)
        models.append(TransformerModel.build_model(args, task))
    return models, d


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--v", type=int, default=8000, help="vocabulary size")
    p.add_argument("--sentences", type=int, default=32)
    p.add_argument("--length", type=int, default=24, help="source and target length (tokens)")
    p.add_argument("--dim", type=int, default=256, help="model width (students and teachers)")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--ms", default="3,10", help="comma-separated numbers of on-the-fly teachers")
    p.add_argument("--topk", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inner", type=int, default=1)
    p.add_argument("--json", help="write the rows here (bench_rows.py format)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    logging.getLogger("shared").setLevel(logging.WARNING)  # fairseq's import may leave the root logger at DEBUG
    ms = sorted({int(m) for m in a.ms.split(",") if m})
    m_max = max(ms)
    (student,), d = build_models(a.v, 1, a.dim, a.layers, seed=0)
    teachers, _ = build_models(a.v, m_max, a.dim, a.layers, seed=100)
    for t in teachers:
        t.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    b, n = a.sentences, a.length
    src = torch.randint(d.nspecial, a.v, (b, n), generator=g)
    tgt = torch.randint(d.nspecial, a.v, (b, n), generator=g)
    prev = torch.cat([torch.full((b, 1), d.eos()), tgt[:, :-1]], 1)
    net_input = {"src_tokens": src, "src_lengths": torch.full((b,), n), "prev_output_tokens": prev}
    target = tgt.reshape(-1)
    opt = torch.optim.Adam(student.parameters(), lr=1e-4)

    def teacher_lp(m: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([torch.log_softmax(t(**net_input)[0].float(), -1).reshape(b * n, a.v) for t in teachers[:m]], 1)

    # --- the cache: built once from M = max(ms) teachers, stored on disk, memory-mapped
    teacher_lp(m_max)  # warm-up (first-call allocations) before the build is timed
    build_record(teacher_lp(1)[:8], a.topk)
    t0 = time.process_time()  # process CPU time: one thread, hardly moved by other processes on a shared machine
    lp = teacher_lp(m_max)
    rec = build_record(lp, a.topk)
    build_s = time.process_time() - t0
    t0 = time.process_time()
    teacher_lp(1)
    one_pass_s = time.process_time() - t0
    layout = CacheLayout(a.v, a.topk, tuple(float(t) for t in (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0)))
    tmp = tempfile.TemporaryDirectory()
    arrays = {}
    for name, x in rec._asdict().items():
        path = Path(tmp.name) / f"{name}.npy"
        np.save(path, x.numpy())
        arrays[name] = np.load(path, mmap_mode="r")
    rows_idx = np.arange(b * n)

    def step(loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            opt.zero_grad(set_to_none=True)
            logits = student(**net_input)[0].reshape(b * n, a.v)
            loss_fn(logits).backward()
            opt.step()
        return run

    def plain(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(z, target, label_smoothing=0.1)

    def online(m: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def loss(z: torch.Tensor) -> torch.Tensor:
            lp_m = teacher_lp(m)
            tg = proxy_target(lp_m)
            return proxy_dirichlet_loss(z, None, "reverse", target=tg)
        return loss

    def cached(z: torch.Tensor) -> torch.Tensor:
        r = TeacherCacheRecord(*(torch.from_numpy(np.asarray(arrays[f][rows_idx])) for f in TeacherCacheRecord._fields))
        tg = cached_proxy_target(r, layout, 1.0)
        return cached_proxy_dirichlet_loss(z, r, layout, "reverse", target=tg)

    steps: Dict[str, Callable[[], None]] = {"plain": step(plain), "cache": step(cached)}
    for m in ms:
        steps[f"online M={m}"] = step(online(m))
    for s in steps.values():  # warm-up
        s()
    names = list(steps)
    times: Dict[str, List[float]] = {k: [] for k in names}
    for r in range(a.repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            for _ in range(a.inner):
                steps[name]()
            times[name].append((time.perf_counter() - t0) / a.inner)
    ratios = {k: [t / p for t, p in zip(times[k], times["plain"])] for k in names if k != "plain"}
    size = bytes_per_position(a.topk, len(layout.temperatures)) + 8
    print(f"V={a.v} batch {b}x{n} tokens, transformer dim {a.dim} x {a.layers} layers (student = each teacher), "
          f"k={a.topk}; torch threads {torch.get_num_threads()}; {a.repeats} interleaved rounds")
    print("| update | seconds (median) | ratio vs plain (median) | ratio min-max |")
    print("|---|---:|---:|---:|")
    print(f"| plain (label-smoothed CE) | {statistics.median(times['plain']):.4f} | 1.00x | - |")
    for name, vals in ratios.items():
        s = summary(vals)
        print(f"| {name} | {statistics.median(times[name]):.4f} | {s['median']:.2f}x | {s['min']:.2f}-{s['max']:.2f} |")
    print(f"cache: {size} bytes per target token (fp32 values, {len(layout.temperatures)} temperatures, + 8 for the "
          f"reference token and its teacher log-prob); build (M={m_max} teachers + compression) = "
          f"{build_s / one_pass_s:.1f}x one teacher's forward pass ({build_s:.3f} s vs {one_pass_s:.3f} s)")
    if a.json:
        out = [row("student update with the teacher cache / plain training", ratios["cache"], "<= 1.2")]
        out += [row(f"student update with {m} on-the-fly teachers / plain training", ratios[f"online M={m}"]) for m in ms]
        out.append(row(f"teacher cache build (M={m_max}) / one teacher pass", [build_s / one_pass_s]))
        write_rows(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
