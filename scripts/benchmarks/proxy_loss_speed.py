"""Benchmark: Proxy-Dirichlet loss (and friends) vs. label-smoothed cross-entropy, forward + backward.

All losses run in ONE process on the same inputs, interleaved: each of ``--repeats`` rounds times
``--inner`` steps of every loss (the order rotates from round to round) and divides each loss's time
by cross-entropy's time *of the same round*; the table gives the median and min–max of that ratio
over the rounds, for wall time and for process CPU time (on a CPU the latter is hardly moved by other
processes on a shared machine). The torch thread count is fixed (``--threads``, default 1) and printed.
Issue 16 targets for the Proxy reverse-KL loss at N = 1024, V = 40,000, M = 5, fp32:
CPU ≤ 3× cross-entropy, GPU ≤ 2×, peak extra memory ≤ 2 [N, V] tensors. On the CPU the Proxy loss takes
the compiled path of ``shared._compiled``, on CUDA the Triton kernel of ``shared._triton_proxy``;
``--variants proxy_reverse_unfused`` adds the same loss with both switched off (``ENDIST_COMPILED_LOSS=0``,
``ENDIST_TRITON_LOSS=0``: the chunked eager ops) as one more contender.

Memory: each loss's second step (after one warm-up step) is the memory measurement. On CPU the peak-RSS mark is
reset right before it (``/proc/self/clear_refs``), so memory is (peak RSS during one forward+backward −
RSS before it) / (N·V·4 bytes); on CUDA (``max_memory_allocated`` − allocated before it) / (N·V·4 bytes).
The gradient of the logits (one [N, V]) is part of it for every loss, cross-entropy included.

    python scripts/benchmarks/proxy_loss_speed.py [--n 1024] [--v 40000] [--m 5] [--device cpu] [--json OUT]

``--dtype bf16|fp16`` feeds half-precision logits and teachers (the losses compute in float32 and
cross-entropy runs in the half dtype); the memory unit stays N·V·4 bytes. ``--chunk-elements`` overrides
``shared.losses.CHUNK_ELEMENTS`` and ``shared.dirichlet.CHUNK_ELEMENTS`` to compare chunk sizes.
``--json OUT`` writes the Proxy rows in the format of ``scripts/benchmarks/bench_rows.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import shared.dirichlet as D  # noqa: E402
import shared.losses as L  # noqa: E402
from bench_rows import row, summary, write_rows  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
VARIANTS = ("cross_entropy", "proxy_reverse", "dirichlet_nll", "ensemble_kd")
OPTIONAL_VARIANTS = ("proxy_reverse_unfused",)
UNFUSED = {"ENDIST_COMPILED_LOSS": "0", "ENDIST_TRITON_LOSS": "0"}


def unfused_proxy_loss(logits: torch.Tensor, teachers: torch.Tensor) -> torch.Tensor:
    """The Proxy loss with the fused paths switched off for this call (the switches are read per call)."""
    saved = {key: os.environ.get(key) for key in UNFUSED}
    os.environ.update(UNFUSED)
    try:
        return L.proxy_dirichlet_loss(logits, teachers, direction="reverse")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_steps(n: int, v: int, m: int, device: str, dtype: str) -> tuple[Dict[str, Callable[[], None]], torch.Tensor]:
    """One forward+backward closure per loss, all on the same logits [N, V] and teachers [N, M, V]."""
    dt = DTYPES[dtype]
    torch.manual_seed(0)
    logits = (torch.randn(n, v, device=device) * 2).to(dt).requires_grad_()
    teachers = torch.log_softmax(torch.randn(n, m, v, device=device) * 3, dim=-1).to(dt)
    target = torch.randint(0, v, (n,), device=device)
    losses: Dict[str, Callable[[], torch.Tensor]] = {
        "cross_entropy": lambda: torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1),
        "proxy_reverse": lambda: L.proxy_dirichlet_loss(logits, teachers, direction="reverse"),
        "dirichlet_nll": lambda: L.dirichlet_nll_loss(logits, teachers),
        "ensemble_kd": lambda: L.ensemble_kd_loss(logits, teachers),
        "proxy_reverse_unfused": lambda: unfused_proxy_loss(logits, teachers),
    }

    def stepper(loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            logits.grad = None
            loss().backward()
        return step

    return {name: stepper(loss) for name, loss in losses.items()}, logits


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_extra_memory(step: Callable[[], None], logits: torch.Tensor, device: str) -> float:
    """Peak bytes above the level before one ``step()``, in units of N·V·4 bytes, after one warm-up step
    (which compiles what ``shared._compiled`` compiles: the compiler's own memory is not the loss's)."""
    step()
    logits.grad = None  # the previous loss's gradient is freed before the baseline is read
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:  # reset the VmHWM peak mark
            f.write("5")
    step()
    _sync(device)
    peak = torch.cuda.max_memory_allocated() - base if device.startswith("cuda") else _rss_bytes("VmHWM") - base
    return peak / (logits.numel() * 4)


def interleaved_seconds(steps: Dict[str, Callable[[], None]], rounds: int, inner: int,
                        device: str) -> tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Wall and process-CPU seconds per step of every loss in each round; the order rotates every round."""
    names = list(steps)
    wall: Dict[str, List[float]] = {name: [] for name in names}
    cpu: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(inner):
                steps[name]()
            _sync(device)
            wall[name].append((time.perf_counter() - t0) / inner)
            cpu[name].append((time.process_time() - c0) / inner)
    return wall, cpu


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--v", type=int, default=40000)
    p.add_argument("--m", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu | cuda (or cuda:N)")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES), help="dtype of the logits and teachers")
    p.add_argument("--chunk-elements", type=int, default=None, help="override shared.{losses,dirichlet}.CHUNK_ELEMENTS")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed and printed; default 1)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median and min-max over them)")
    p.add_argument("--inner", type=int, default=2, help="timed steps of each loss per round")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (optional: proxy_reverse_unfused); cross_entropy and proxy_reverse always run")
    p.add_argument("--json", help="write the Proxy rows here (bench_rows.py format)")
    a = p.parse_args(argv)
    for flag in ("n", "v", "m", "threads", "repeats", "inner"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(a, flag)}")
    variants = [x for x in a.variants.split(",") if x]
    unknown = sorted(set(variants) - set(VARIANTS) - set(OPTIONAL_VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)} (choose from {', '.join(VARIANTS + OPTIONAL_VARIANTS)})")
    variants = ["cross_entropy", "proxy_reverse"] + [x for x in variants if x not in ("cross_entropy", "proxy_reverse")]
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {a.device}: no CUDA device is available")
    if a.chunk_elements:
        L.CHUNK_ELEMENTS = D.CHUNK_ELEMENTS = L.CUDA_CHUNK_ELEMENTS = D.CUDA_CHUNK_ELEMENTS = a.chunk_elements
    torch.set_num_threads(a.threads)

    all_steps, logits = make_steps(a.n, a.v, a.m, a.device, a.dtype)
    steps = {name: all_steps[name] for name in variants}
    memory = {name: peak_extra_memory(step, logits, a.device) for name, step in steps.items()}
    times, cpu_times = interleaved_seconds(steps, a.repeats, a.inner, a.device)
    ratios = {name: [t / ce for t, ce in zip(times[name], times["cross_entropy"])] for name in variants}
    cpu_ratios = {name: [t / ce for t, ce in zip(cpu_times[name], cpu_times["cross_entropy"])] for name in variants}

    dev = torch.cuda.get_device_name(torch.device(a.device)) if a.device.startswith("cuda") else "cpu"
    chunks = f" CHUNK_ELEMENTS={a.chunk_elements}" if a.chunk_elements else ""
    print(f"N={a.n} V={a.v} M={a.m} device={dev} {a.dtype}{chunks} forward+backward; torch threads {torch.get_num_threads()}; "
          f"{a.repeats} interleaved rounds x {a.inner} steps")
    print("| loss | seconds (median) | ratio vs cross-entropy (median) | ratio min-max | CPU-time ratio (median, min-max) "
          "| peak extra memory ([N,V] tensors) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in variants:
        s, c = summary(ratios[name]), summary(cpu_ratios[name])
        print(f"| {name} | {summary(times[name])['median']:.4f} | {s['median']:.2f}x | {s['min']:.2f}-{s['max']:.2f} "
              f"| {c['median']:.2f}x ({c['min']:.2f}-{c['max']:.2f}) | {memory[name]:.2f} |")
    if a.json:
        where = "GPU" if a.device.startswith("cuda") else "CPU"
        size = f"N={a.n} V={a.v} M={a.m} {a.dtype}"
        target = "<= 2" if where == "GPU" else "<= 3"
        rows = [row(f"Proxy reverse-KL fwd+bwd / label-smoothed CE, {where} ({size})", ratios["proxy_reverse"], target)]
        if where == "CPU":  # process CPU time: hardly moved by other processes on a shared machine
            rows.append(row(f"Proxy reverse-KL fwd+bwd / label-smoothed CE, CPU time ({size})", cpu_ratios["proxy_reverse"], target))
        rows.append(row(f"Proxy reverse-KL peak extra memory, {where} ([N,V] tensors, {size})",
                        [memory["proxy_reverse"]], "<= 2"))
        write_rows(a.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
