"""Benchmark: error of the cached teacher losses (shared.teacher_cache) vs the uncached losses, by k and T.

A synthetic batch of N positions over V classes (default V = 40,000), M members around a Zipf-shaped
ensemble mean (a few likely classes, a long tail, as in NMT): member logits = −a·ln(rank) + 0.5·noise + spread·noise_m
(``--zipf a``, default 2: top-1 probability ≈ 0.5; ``--spread``, default 0.7).
For each k (default 16, 64, 256, and V: exact) the record is built once from the float32 members
(``--values fp32|fp16``: dtype of its ln-values), and at each temperature T (grid points and points
between them) every criterion's loss and gradient with respect to the student logits are compared with
the uncached loss computed in float64 on the full members:

    loss error     = |Σ L_cached − Σ L| / |Σ L|         (Proxy: the full KL, β-only constants restored)
    gradient error = ‖g_cached − g‖₂ / ‖g‖₂              (over the whole [N, V] batch)

Criteria: EnD (``ensemble_kd_loss``), EnD² (``dirichlet_nll_loss``, central smoothing 1e-4), Proxy reverse
and forward KL (``proxy_dirichlet_loss``, normalised). The student logits are a noisy copy of the mean.

    python scripts/benchmarks/teacher_cache_error.py [--n 32] [--v 40000] [--m 5] [--ks 16,64,256]
        [--temps 1,1.5,1.7,2,3,5,10] [--values fp32] [--json OUT]

``--fairseq-data DATA_BIN --ensemble-paths t1.pt,t2.pt [--student s.pt] [--subset valid]`` replaces the synthetic
batch by real teachers' distributions at the target tokens of the first ``--n`` sentences of a split (e.g. the
toy corpus of ``scripts/seq/toy_pipeline.sh``; k > V are dropped).

``--json OUT`` writes one row per (criterion, k, T, loss|grad) in the format of ``bench_rows.py``
(the measured error as median = min = max; no target).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rows import row, write_rows  # noqa: E402
from shared.losses import dirichlet_nll_loss, dropped_constant, ensemble_kd_loss, proxy_dirichlet_loss  # noqa: E402
from shared.dirichlet import proxy_target  # noqa: E402
from shared.teacher_cache import (  # noqa: E402
    DEFAULT_TEMPERATURES,
    CacheLayout,
    build_record,
    bytes_per_position,
    cached_dirichlet_nll_loss,
    cached_kd_loss,
    cached_proxy_dirichlet_loss,
    cached_proxy_target,
)

CRITERIA = ("end", "end2", "proxy_reverse", "proxy_forward")
SMOOTHING = 1e-4


def synthetic_batch(n: int, v: int, m: int, zipf: float = 2.0, spread: float = 0.7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Member log-probs ``[n, m, v]`` (float32) and student logits ``[n, v]`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    rank = torch.stack([torch.randperm(v, generator=g) for _ in range(n)]).double() + 1.0
    base = -zipf * rank.log() + 0.5 * torch.randn(n, v, generator=g, dtype=torch.float64)
    members = base.unsqueeze(1) + spread * torch.randn(n, m, v, generator=g, dtype=torch.float64)
    lp = torch.log_softmax(members, -1).float()
    student = torch.log_softmax(base + 0.5 * torch.randn(n, v, generator=g, dtype=torch.float64), -1)
    return lp, student


def fairseq_batch(data_bin: str, teacher_paths: List[str], student_path: str, subset: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real teachers' member log-probs ``[P, M, V]`` (float32) at the P target tokens of the first ``n`` sentences of
    ``subset`` (teacher forcing), and the student's log-probs there ``[P, V]`` (float64; without ``student_path``
    the members' mean log-probability) — the toy corpus' own distributions instead of a synthetic batch."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from endist_seq.teachers import TeacherEnsemble

    user_dir = str(Path(__file__).resolve().parents[2] / "endist_seq")
    args = options.parse_args_and_arch(options.get_generation_parser(),
                                       [data_bin, "--user-dir", user_dir, "--task", "translation", "--cpu"])
    task = tasks.setup_task(convert_namespace_to_omegaconf(args).task)
    task.load_dataset(subset)
    ds = task.dataset(subset)
    sample = ds.collater([ds[i] for i in range(min(n, len(ds)))])
    mask = sample["target"].ne(task.target_dictionary.pad())
    with torch.no_grad():
        lp = TeacherEnsemble.load(teacher_paths, task).log_probs(sample["net_input"], mask).float()
        if student_path:
            z = TeacherEnsemble.load([student_path], task).log_probs(sample["net_input"], mask)[:, 0].double()
        else:
            z = lp.double().mean(1)
    return lp, z


def _value_grad(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = z.detach().clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad


def uncached(name: str, lp: torch.Tensor, t: float) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "end":
        return lambda x: ensemble_kd_loss(x, lp, t, reduction="sum")
    if name == "end2":
        return lambda x: dirichlet_nll_loss(x, lp, t, SMOOTHING, 0.0, reduction="sum")
    direction = name.split("_")[1]
    target = proxy_target(lp, temperature=t)
    const = (dropped_constant(target.beta, direction) / target.precision.clamp_min(1.0)).sum()
    return lambda x: proxy_dirichlet_loss(x, None, direction, temperature=t, target=target, reduction="sum") + const


def cached(name: str, rec, lay: CacheLayout, t: float) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "end":
        return lambda x: cached_kd_loss(x, rec, lay, t, reduction="sum")
    if name == "end2":
        return lambda x: cached_dirichlet_nll_loss(x, rec, lay, t, SMOOTHING, 0.0, reduction="sum")
    direction = name.split("_")[1]
    target = cached_proxy_target(rec, lay, t, "mkl", 1.0)
    target = target._replace(beta=target.beta.double(), precision=target.precision.double())
    const = (dropped_constant(target.beta, direction) / target.precision.clamp_min(1.0)).sum()
    return lambda x: cached_proxy_dirichlet_loss(x, rec, lay, direction, temperature=t, reduction="sum", target=target) + const


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--v", type=int, default=40000)
    p.add_argument("--m", type=int, default=5)
    p.add_argument("--zipf", type=float, default=2.0, help="exponent a of the mean's Zipf shape")
    p.add_argument("--spread", type=float, default=0.7, help="std of the members' logit noise around it")
    p.add_argument("--ks", default="16,64,256", help="comma-separated k (k = V is added: the exact row)")
    p.add_argument("--temps", default="1,1.5,1.7,2,3,5,10", help="temperatures (grid: " + ",".join(f"{t:g}" for t in DEFAULT_TEMPERATURES) + ")")
    p.add_argument("--values", default="fp32", choices=("fp32", "fp16"), help="dtype of the record's ln-values")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fairseq-data", help="instead of the synthetic batch: a fairseq DATA_BIN whose --ensemble-paths "
                   "teachers give the member log-probs (--v, --m, --zipf, --spread are then ignored)")
    p.add_argument("--ensemble-paths", default="", help="with --fairseq-data: comma-separated teacher checkpoints")
    p.add_argument("--student", default="", help="with --fairseq-data: a student checkpoint whose log-probs are the "
                   "point where losses and gradients are compared (default: the members' mean log-probs)")
    p.add_argument("--subset", default="valid", help="with --fairseq-data: the split whose first --n sentences are used")
    p.add_argument("--json", help="write the rows here (bench_rows.py format)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.fairseq_data:
        paths = [x for x in a.ensemble_paths.split(",") if x]
        if not paths:
            p.error("--fairseq-data needs --ensemble-paths")
        lp, z = fairseq_batch(a.fairseq_data, paths, a.student, a.subset, a.n)
        a.m, a.v = lp.shape[1], lp.shape[2]
    temps = [float(t) for t in a.temps.split(",") if t]
    value_dtype = torch.float16 if a.values == "fp16" else torch.float32
    ks = [k for k in sorted({int(k) for k in a.ks.split(",") if k} | {a.v}) if 1 <= k <= a.v]
    if not a.fairseq_data:
        lp, z = synthetic_batch(a.n, a.v, a.m, a.zipf, a.spread)
    lp64 = lp.double()
    top1 = float(lp64.exp().mean(1).max(-1).values.mean())
    source = (f"{a.fairseq_data} ({a.subset}, {a.n} sentences, {lp.shape[0]} target tokens)" if a.fairseq_data
              else f"synthetic N={a.n} zipf={a.zipf:g} spread={a.spread:g}")
    print(f"{source} V={a.v} M={a.m} values={a.values}; mean top-1 probability of p̄ {top1:.3f}; torch threads {torch.get_num_threads()}")
    print("grid temperatures: " + ", ".join(f"{t:g}" for t in DEFAULT_TEMPERATURES) + " (other T: interpolated)")
    refs: Dict[tuple, tuple] = {}
    for t in temps:
        for c in CRITERIA:
            refs[(c, t)] = _value_grad(uncached(c, lp64, t), z)
    rows: List[Dict[str, object]] = []
    print("| k | bytes/position | build s | T | " + " | ".join(f"{c} loss | {c} grad" for c in CRITERIA) + " |")
    print("|---:|---:|---:|---:|" + "---:|---:|" * len(CRITERIA))
    for k in ks:
        t0 = time.perf_counter()
        rec = build_record(lp, k, value_dtype=value_dtype)
        build = time.perf_counter() - t0
        rec = rec._replace(grid=rec.grid.double())
        lay = CacheLayout(a.v, k, DEFAULT_TEMPERATURES)
        size = bytes_per_position(k, len(DEFAULT_TEMPERATURES), value_dtype)
        for t in temps:
            cells = []
            for c in CRITERIA:
                ref_v, ref_g = refs[(c, t)]
                val, grad = _value_grad(cached(c, rec, lay, t), z)
                err_v = abs(val - ref_v) / max(abs(ref_v), 1e-300)
                err_g = float((grad - ref_g).norm() / ref_g.norm().clamp_min(1e-300))
                cells += [f"{err_v:.1e}", f"{err_g:.1e}"]
                kname = "V" if k == a.v else str(k)
                for what, err in (("loss", err_v), ("grad", err_g)):
                    rows.append(row(f"teacher cache rel. {what} error {c} k={kname} T={t:g} ({a.values})", [err]))
            print(f"| {k} | {size} | {build:.2f} | {t:g} | " + " | ".join(cells) + " |")
    if a.json:
        write_rows(a.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
