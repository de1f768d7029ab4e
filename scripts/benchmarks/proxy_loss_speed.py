"""Benchmark: Proxy-Dirichlet loss vs. label-smoothed cross-entropy (ratios, one run).

Forward + backward at N target tokens, V classes, M teachers, fp32 (issue #2 goal on a
2-core CPU: ≤ 4× the time of cross-entropy, peak extra memory ≤ 3 tensors of [N, V]).
Each variant runs in its own subprocess. On CPU the peak-RSS mark is reset after the
inputs are built (``/proc/self/clear_refs``), so memory is reported as
(peak RSS during one forward+backward − RSS before it) / (N·V·4 bytes); the gradient
of the logits (one [N, V]) is part of it for every loss, cross-entropy included.

    python scripts/benchmarks/proxy_loss_speed.py [--n 1024] [--v 40000] [--m 5] [--device cpu]

On CUDA the time is taken after ``torch.cuda.synchronize()`` and the memory is
(``torch.cuda.max_memory_allocated`` during one forward+backward − allocated before it) / (N·V·4 bytes).
``--dtype bf16|fp16`` feeds half-precision logits and teachers (the losses compute in float32 and
cross-entropy runs in the half dtype); the memory unit stays N·V·4 bytes. ``--chunk-elements`` overrides
``shared.losses.CHUNK_ELEMENTS`` and ``shared.dirichlet.CHUNK_ELEMENTS`` (elements per row chunk of the
loss and of the Proxy target) to compare chunk sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _run_one(variant: str, n: int, v: int, m: int, device: str, repeats: int, dtype: str = "fp32",
             chunk_elements: int | None = None) -> dict:
    import torch

    import shared.dirichlet as D
    import shared.losses as L

    if chunk_elements:
        L.CHUNK_ELEMENTS = D.CHUNK_ELEMENTS = L.CUDA_CHUNK_ELEMENTS = D.CUDA_CHUNK_ELEMENTS = chunk_elements
    dt = getattr(torch, DTYPES[dtype])
    torch.manual_seed(0)
    logits = (torch.randn(n, v, device=device) * 2).to(dt).requires_grad_()
    teachers = torch.log_softmax(torch.randn(n, m, v, device=device) * 3, dim=-1).to(dt)
    target = torch.randint(0, v, (n,), device=device)

    def step() -> None:
        logits.grad = None
        if variant == "cross_entropy":
            loss = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
        elif variant == "proxy_reverse":
            loss = L.proxy_dirichlet_loss(logits, teachers, direction="reverse")
        elif variant == "dirichlet_nll":
            loss = L.dirichlet_nll_loss(logits, teachers)
        elif variant == "ensemble_kd":
            loss = L.ensemble_kd_loss(logits, teachers)
        else:
            raise ValueError(variant)
        loss.backward()

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        rss0 = _rss_bytes("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:  # reset the VmHWM peak mark
            f.write("5")
    step()  # warm-up (also the memory measurement)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_bytes("VmHWM") - rss0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"variant": variant, "seconds": min(times), "peak_extra_NV": peak / (n * v * 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--v", type=int, default=40000)
    p.add_argument("--m", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu | cuda (or cuda:N)")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES), help="dtype of the logits and teachers")
    p.add_argument("--chunk-elements", type=int, default=None, help="override shared.{losses,dirichlet}.CHUNK_ELEMENTS")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default="cross_entropy,proxy_reverse,dirichlet_nll,ensemble_kd")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(_run_one(a.one, a.n, a.v, a.m, a.device, a.repeats, a.dtype, a.chunk_elements)))
        return
    rows = []
    for variant in a.variants.split(","):
        cmd = [sys.executable, __file__, "--one", variant, "--n", str(a.n), "--v", str(a.v), "--m", str(a.m),
               "--device", a.device, "--repeats", str(a.repeats), "--dtype", a.dtype]
        if a.chunk_elements:
            cmd += ["--chunk-elements", str(a.chunk_elements)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = next(r["seconds"] for r in rows if r["variant"] == "cross_entropy")
    chunks = f" CHUNK_ELEMENTS={a.chunk_elements}" if a.chunk_elements else ""
    print(f"N={a.n} V={a.v} M={a.m} device={a.device} {a.dtype}{chunks} forward+backward")
    print(f"| loss | seconds | ratio vs cross-entropy | peak extra memory ([N,V] tensors) |")
    print(f"|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['seconds']:.3f} | {r['seconds'] / base:.2f}x | {r['peak_extra_NV']:.2f} |")


if __name__ == "__main__":
    main()
