#!/usr/bin/env python
"""Speed of the multi-member fast paths against the Python loop over M separate networks (issue 16).

All contenders run interleaved in ONE process with a fixed torch thread count (each round calls every
contender once; ``--repeats`` timed rounds after one warm-up round); each row is the per-round ratio
``loop seconds / fast seconds`` (a speed-up: > 1 means the fast path is faster), printed as median and min–max:

* ``BE inference / loop``       — ``BatchEnsembleNet`` (M members, batch B) vs the M plain networks one after
                                  another on the same batch, eval mode, ``torch.inference_mode``; target ≥ 1;
* ``BE train step / loop``      — forward + backward + SGD step on the same batch (cross-entropy averaged over
                                  members); target ≥ 1 (BE step ≤ loop step);
* ``vectorised ensemble / loop (train|eval)`` — ``build_ensemble(vectorize=True)`` (a ``GroupedEnsemble`` for
                                  batch-norm networks) vs ``ModuleEnsemble`` on the same members; train: each
                                  member on its own batch (``forward_members``, as the ``ensemble`` method
                                  trains) + SGD step; eval: all members on one batch; target ≥ 1.5.

* ``ceiling of vectorising: loop / its conv+linear layers alone on the M-fold batch (train|eval)`` (CPU only,
                                  no target) — ``loop seconds / layers_alone_seconds``: the loop's Conv2d/Linear
                                  layers timed alone, each on its input repeated M times and in its faster memory
                                  format (contiguous or channels_last), forward (train: + backward), nothing else.
                                  A vectorised ensemble does at least that arithmetic, so unless it found faster
                                  kernels for the same layer shapes it cannot beat the loop by more than this.

Numbers depend on the machine and its load (a shared machine is noisy: read the min–max).
``--json OUT`` writes ``{"config": {...}, "rows": [{"name", "median", "min", "max", "target"}]}`` (ratios;
``target`` as ``">= X"``, the ``bench_rows.py`` format that ``make bench`` reads; PASS when ``median >= X``).

    python scripts/benchmarks/vision_speed.py                       # resnet20 + wrn28-1, CPU, 1 thread
    python scripts/benchmarks/vision_speed.py --models resnet20 --repeats 7 --json speed.json
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import ctypes.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from endist_vision.models import BatchEnsembleNet, ModuleEnsemble, build_ensemble, create_model  # noqa: E402
from endist_vision.throughput import interleaved_seconds  # noqa: E402
from shared.io import atomic_write_text  # noqa: E402

MODELS = {"resnet20": ("resnet20", {}), "wrn28-1": ("wrn28", {"width": 1})}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet20,wrn28-1", help=f"comma-separated, from {sorted(MODELS)}")
    p.add_argument("--members", type=int, default=4, help="M of the BatchEnsemble rows")
    p.add_argument("--batch-size", type=int, default=128, help="batch B of the BatchEnsemble rows")
    p.add_argument("--ensemble-members", default="4,10", help="comma-separated M of the vectorised-ensemble rows")
    p.add_argument("--ensemble-batch-size", type=int, default=32, help="batch per member of the ensemble rows")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds (after one warm-up round)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (fixed and printed)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--tune-malloc", action="store_true",
                   help="glibc only: mallopt(M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) = 1 GiB before timing, so freed "
                        "activation blocks are reused instead of unmapped and faulted in again")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the rows as JSON here")
    a = p.parse_args(argv)
    for flag in ("members", "batch_size", "ensemble_batch_size", "image_size", "repeats", "threads"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(a, flag)}")
    a.models = [m for m in a.models.split(",") if m]
    bad = [m for m in a.models if m not in MODELS]
    if bad or not a.models:
        p.error(f"--models: unknown {bad or 'empty list'}; choose from {sorted(MODELS)}")
    try:
        a.ensemble_members = [int(v) for v in a.ensemble_members.split(",") if v]
    except ValueError:
        p.error(f"--ensemble-members must be comma-separated integers, got {a.ensemble_members!r}")
    if any(m < 1 for m in a.ensemble_members):
        p.error("--ensemble-members must all be >= 1")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    return a


def tune_malloc() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallopt"):
        raise SystemExit("vision_speed.py: --tune-malloc needs glibc's mallopt, not available here")
    for option in (-3, -1):  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        libc.mallopt(option, 1 << 30)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, forward: Callable[[], torch.Tensor],
               labels: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = forward()  # [B, M, K]
        b, m, k = out.shape
        F.cross_entropy(out.reshape(b * m, k), labels.repeat_interleave(m)).backward()
        opt.step()
    model.train()
    return step


def eval_call(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def call() -> None:
        with torch.inference_mode():
            model.eval()(x)
    return call


def layer_inputs(net: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor, bool]]:
    """Every Conv2d/Linear layer of ``net`` with the input it sees in one forward pass on ``x`` and whether a
    training step back-propagates into that input (not into the images: the first layer's input gets no gradient)."""
    seen: list[tuple[nn.Module, torch.Tensor, bool]] = []
    hooks = [mod.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0].detach().clone(), inp[0].requires_grad)))
             for mod in net.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    try:
        with torch.enable_grad():  # parameters require grad, the images do not: requires_grad tells the two apart
            net.eval()(x.detach())
    finally:
        for h in hooks:
            h.remove()
    return seen


def layers_alone_seconds(net: nn.Module, x: torch.Tensor, members: int, train: bool, rounds: int = 3) -> float:
    """Seconds of ``net``'s Conv2d/Linear layers alone on a ``members``-fold batch (their inputs repeated), each
    in its faster memory format (contiguous or channels_last), best of ``rounds``: forward (``train``: forward
    + backward to the weight, and to the input where the network back-propagates into it). No normalisation,
    activation, pooling or Python between them."""
    total = 0.0
    for mod, inp, input_grad in layer_inputs(net, x):
        big = inp.repeat(members, *([1] * (inp.dim() - 1)))
        best = float("inf")
        formats = [torch.contiguous_format] + ([torch.channels_last] if big.dim() == 4 else [])
        for fmt in formats:
            layer = copy.deepcopy(mod).to(memory_format=fmt) if big.dim() == 4 else copy.deepcopy(mod)
            xin = big.contiguous(memory_format=fmt).requires_grad_(train and input_grad)
            for r in range(rounds + 1):  # the first call warms up
                t0 = time.perf_counter()
                if train:
                    out = layer(xin)
                    out.backward(torch.ones_like(out))
                    layer.zero_grad(set_to_none=True)
                    xin.grad = None
                else:
                    with torch.no_grad():
                        layer(xin)
                if r:
                    best = min(best, time.perf_counter() - t0)
        total += best
    return total


def timed_rows(fns: dict[str, Callable[[], None]], pairs: list[tuple[str, str, str, float]], repeats: int,
               sync: Callable[[], None] | None) -> tuple[list[dict], dict[str, list[float]]]:
    """The ratio rows of ``pairs`` (name, loop key, fast key, target) and every contender's seconds per round."""
    secs = interleaved_seconds(fns, repeats, warmup=1, sync=sync)
    rows = []
    for name, loop, fast, target in pairs:
        rows.append(ratio_row(name, [lo / fa for lo, fa in zip(secs[loop], secs[fast])], target))
    return rows, secs


def ratio_row(name: str, ratios: list[float], target: float | None) -> dict:
    return {"name": name, "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "target": target}


def bench_model(key: str, a: argparse.Namespace, dev: torch.device, sync: Callable[[], None] | None) -> list[dict]:
    arch, kw = MODELS[key]

    def base(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return create_model(arch, 10, **kw).net.to(dev)

    gen = torch.Generator().manual_seed(0)
    rows: list[dict] = []
    m, b = a.members, a.batch_size
    x = torch.rand(b, 3, a.image_size, a.image_size, generator=gen).to(dev)
    y = torch.randint(0, 10, (b,), generator=gen).to(dev)
    loop = ModuleEnsemble([base(i) for i in range(m)])
    be = BatchEnsembleNet.from_plain(base(0), m).to(dev)
    sgd = {n: torch.optim.SGD(mod.parameters(), lr=1e-3) for n, mod in (("loop", loop), ("be", be))}
    fns = {
        "loop_eval": eval_call(loop, x), "be_eval": eval_call(be, x),
        "loop_train": train_step(loop, sgd["loop"], lambda: loop(x), y),
        "be_train": train_step(be, sgd["be"], lambda: be(x), y),
    }
    tag = f"{key} M={m} B={b}"
    rows += timed_rows(fns, [(f"{tag}: BE inference / loop", "loop_eval", "be_eval", 1.0),
                             (f"{tag}: BE train step / loop", "loop_train", "be_train", 1.0)], a.repeats, sync)[0]
    for me in a.ensemble_members:
        be_b = a.ensemble_batch_size
        xs = torch.rand(me, be_b, 3, a.image_size, a.image_size, generator=gen).to(dev)
        ys = torch.randint(0, 10, (be_b,), generator=gen).to(dev)
        vec = build_ensemble(base, me, vectorize=True).to(dev)
        ref = ModuleEnsemble([base(i) for i in range(me)])
        opt_v, opt_r = torch.optim.SGD(vec.parameters(), lr=1e-3), torch.optim.SGD(ref.parameters(), lr=1e-3)
        fns = {
            "loop_eval": eval_call(ref, xs[0]), "vec_eval": eval_call(vec, xs[0]),
            "loop_train": train_step(ref, opt_r, lambda: ref.forward_members(xs), ys),
            "vec_train": train_step(vec, opt_v, lambda: vec.forward_members(xs), ys),
        }
        tag = f"{key} M={me} B={be_b}: vectorised ensemble ({type(vec).__name__}) / loop"
        timed, secs = timed_rows(fns, [(f"{tag} (train)", "loop_train", "vec_train", 1.5),
                                       (f"{tag} (eval)", "loop_eval", "vec_eval", 1.5)], a.repeats, sync)
        rows += timed
        if dev.type == "cpu":  # the arithmetic floor of any vectorisation: the same layers on the M-fold batch
            tag = f"{key} M={me} B={be_b}: ceiling of vectorising: loop / its conv+linear layers alone on the M-fold batch"
            for mode in ("train", "eval"):
                floor = layers_alone_seconds(ref.members[0], xs[0], me, train=mode == "train")
                rows.append(ratio_row(f"{tag} ({mode})", [s / floor for s in secs[f"loop_{mode}"]], None))
    return rows


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.tune_malloc:
        tune_malloc()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} torch thread(s)"
    print(f"# multi-member fast paths vs the loop: {where}, {a.repeats} interleaved rounds, "
          f"malloc {'tuned' if a.tune_malloc else 'default'}; ratio = loop s / fast s\n")
    print("| row | median | min–max | target | |")
    print("|---|---:|---:|---:|---|")
    rows = []
    for key in a.models:
        for r in bench_model(key, a, dev, sync):
            rows.append(r)
            target, ok = ("–", "–") if r["target"] is None else (
                f"≥ {r['target']:g}×", "PASS" if r["median"] >= r["target"] else "FAIL")
            print(f"| {r['name']} | {r['median']:.3f}× | {r['min']:.3f}–{r['max']:.3f} | {target} | {ok} |", flush=True)
    if a.json_out:
        config = {k: v for k, v in vars(a).items() if k != "json_out"} | {"device_name": where}
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        table_rows = [{**r, "target": "" if r["target"] is None else f">= {r['target']:g}"} for r in rows]  # make bench's
        atomic_write_text(Path(a.json_out), json.dumps({"config": config, "rows": table_rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
