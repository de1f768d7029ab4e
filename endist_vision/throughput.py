"""Inference throughput of models on one device: the interleaved timing used by
``scripts/benchmarks/vision_inference.py`` (images/s) and ``scripts/lib/inference_runtime.py`` (ms/img)."""

from __future__ import annotations

import statistics
import time
from contextlib import AbstractContextManager
from typing import Any, Callable, Mapping

import torch


def autocast(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    """``torch.autocast`` for ``amp`` in ``none|bf16|fp16`` (disabled for ``none``)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def images_per_second(models: Mapping[str, Callable[[torch.Tensor], Any]], x: torch.Tensor, iters: int, repeats: int,
                      amp: str = "none") -> dict[str, float]:
    """Median images/s per model (any callable of the batch) over ``repeats`` rounds of ``iters`` calls on ``x``.

    Rounds are interleaved (every model once per round) so that machine-load drift affects all
    models alike; every model is warmed up first; CUDA is synchronised around each round.
    """
    cuda = x.device.type == "cuda"
    rates: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode(), autocast(x.device, amp):
        for model in models.values():
            for _ in range(3):
                model(x)
        for _ in range(repeats):
            for name, model in models.items():
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(iters):
                    model(x)
                if cuda:
                    torch.cuda.synchronize()
                rates[name].append(iters * x.shape[0] / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}


def interleaved_seconds(fns: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                        sync: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Wall seconds of every zero-argument callable, ``repeats`` rounds, each round calling every callable once
    in turn (interleaved, so machine-load drift hits all alike) after ``warmup`` untimed rounds. ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before each start and stop. Returns name → ``repeats`` durations."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            if sync is not None:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times
