#!/usr/bin/env python
"""Inference throughput (images/s) of multi-member students vs. an ensemble and a single model (issue #6).

For one base architecture (registered in ``endist_vision.models``) it times, in eval mode with
``torch.inference_mode``:

* ``single``          — the base network;
* ``ensemble``        — M independent copies (``endist_vision.models.build_ensemble``: vmap'd when
                        the base has no batch norm, a Python loop otherwise);
* ``batchensemble``   — the BE version with M members (one pass over an ``M·B`` batch);
* ``hydra``           — shared body + M heads (last ``--head-blocks`` blocks);
* ``latentbe_merged`` — a LatentBE student merged with ``merge_to_single`` (must cost what ``single`` costs).

Prints a Markdown table with images/s and the ratio to ``single`` and optionally writes JSON.
This is a benchmark, not a test: numbers depend on the machine and its load.

    python scripts/benchmarks/vision_inference.py                                  # digits_cnn, 8×8, CPU
    python scripts/benchmarks/vision_inference.py --model wrn28 --model-kwargs '{"width": 1}' \\
        --image-size 32 --in-channels 3 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from endist_vision.models import build_ensemble, create_model  # noqa: E402
from endist_vision.throughput import autocast, images_per_second  # noqa: E402
from endist_vision.models import BatchEnsembleNet  # noqa: E402
from endist_vision.models.layers import be_layers  # noqa: E402
from endist_vision.models.wrappers.hydra import HydraNet  # noqa: E402
from endist_vision.models.wrappers.latentbe import latentbe_student, merge_to_single  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="digits_cnn", help="registered base architecture")
    p.add_argument("--model-kwargs", default="{}", help="JSON dict of keyword arguments for the base model")
    p.add_argument("--members", type=int, default=5, help="ensemble size M")
    p.add_argument("--head-blocks", type=int, default=3, help="Hydra head = last N blocks of the base")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=8)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--iters", type=int, default=20, help="timed forward passes per repeat")
    p.add_argument("--repeats", type=int, default=7, help="median over this many repeats")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="CUDA only: run under torch.autocast")
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    for flag in ("members", "batch_size", "image_size", "in_channels", "iters", "repeats", "head_blocks"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(a, flag)}")
    if a.num_classes < 2:
        p.error(f"--num-classes must be >= 2, got {a.num_classes}")
    try:
        a.model_kwargs = json.loads(a.model_kwargs)
        assert isinstance(a.model_kwargs, dict)
    except (json.JSONDecodeError, AssertionError):
        p.error(f"--model-kwargs must be a JSON object, got {a.model_kwargs!r}")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if a.amp != "none" and a.device != "cuda":
        p.error("--amp needs --device cuda")
    return a


def build_models(a: argparse.Namespace) -> dict[str, nn.Module]:
    def base(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return create_model(a.model, a.num_classes, in_channels=a.in_channels, **a.model_kwargs).net

    m = a.members
    latent = latentbe_student(base(0), m)
    with torch.no_grad():  # trained-looking factors, so the merge is not a trivial copy
        for layer in be_layers(latent):
            layer.fast_r.add_(0.1 * torch.randn_like(layer.fast_r))
            layer.fast_s.add_(0.1 * torch.randn_like(layer.fast_s))
    make: dict[str, Callable[[], nn.Module]] = {
        "single": lambda: base(0),
        "ensemble": lambda: build_ensemble(base, m),
        "batchensemble": lambda: BatchEnsembleNet.from_plain(base(0), m),
        "hydra": lambda: HydraNet.from_network(base(0), a.head_blocks, m),
        "latentbe_merged": lambda: merge_to_single(latent),
    }
    return {name: f().to(a.device).eval() for name, f in make.items()}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    models = build_models(a)
    x = torch.rand(a.batch_size, a.in_channels, a.image_size, a.image_size, device=a.device)
    rows = []
    rates = images_per_second(models, x, a.iters, a.repeats, a.amp)
    for name, model in models.items():
        with torch.inference_mode(), autocast(x.device, a.amp):
            out_shape = tuple(model(x).shape)
        rate = rates[name]
        params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
        rows.append({"model": name, "images_per_s": rate, "params": params, "output": out_shape})
    single = next(r["images_per_s"] for r in rows if r["model"] == "single")
    for r in rows:
        r["ratio_to_single"] = r["images_per_s"] / single
    dev = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"# inference: {a.model} {a.model_kwargs or ''} M={a.members}, batch {a.batch_size}, "
          f"{a.in_channels}×{a.image_size}×{a.image_size}, {dev}{'' if a.amp == 'none' else ', autocast ' + a.amp}\n")
    print("| model | output | params | images/s | × single |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {list(r['output'])} | {r['params']:,} | {r['images_per_s']:,.0f} | {r['ratio_to_single']:.2f} |")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"config": {k: v for k, v in vars(a).items() if k != "out"},
                                           "device": dev, "results": rows}, indent=2, default=list) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
