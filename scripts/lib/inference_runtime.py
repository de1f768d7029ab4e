"""Inference time (ms per image) of trained runs on one device ([LatentBE] Table 5), written as JSON.

    python scripts/lib/inference_runtime.py --out runtime.json [--device auto] [--batch-size 128] \\
        --run "DE-4 teacher=runs/.../ensemble" --run KD=runs/.../KD --run KD+BE=runs/.../KD_BE ...

Each run is loaded as `endist-vision evaluate` loads it (checkpoints/final.pt; `--members N` via
``LABEL=RUN_DIR@N`` for a teacher of the first N members) and timed on a random batch of its input shape
in eval mode under ``torch.inference_mode`` (``endist_vision.throughput.images_per_second``):

* ``batched``   — the parallel forward pass: a merged LatentBE student and a KD student are one plain
                  network; a BatchEnsemble student is its pass over M·B rows; an ensemble is its members
                  stacked into one vmap-ed call (``StackedEnsemble``; for batch-norm members
                  ``ModuleEnsemble.stacked()``, evaluation only); ``null`` ("n/a") where no parallel
                  forward exists (members of different structure);
* ``multipass`` — only for multi-member models: M separate passes of batch B, one per member network
                  (``member(m)``: for a BatchEnsemble student the plain network with weights W∘r_m s_mᵀ
                  and bias b_m; for an ensemble member m itself).

The median over ``--repeats`` rounds of ``--iters`` passes is reported (rounds interleaved over runs,
CUDA synchronised around each round).
Output: ``{"device": ..., "batch_size": B, "runs": {LABEL: {"batched_ms_per_img": .. or null,
"multipass_ms_per_img": .., "members": M, "run": DIR}}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from endist_vision.checkpoint import load_run_model
from endist_vision.models import BatchEnsembleNet, ModuleEnsemble, StackedEnsemble, raw_net, wrap_like
from endist_vision.throughput import images_per_second


def member_networks(model: nn.Module) -> list[nn.Module] | None:
    """The M single-member networks of a multi-member model (None for a single network)."""
    net = raw_net(model)
    if isinstance(net, BatchEnsembleNet):
        return [wrap_like(model, net.member(m)) for m in range(net.ensemble_size)]
    if isinstance(net, (StackedEnsemble, ModuleEnsemble)) and net.num_members > 1:
        return [net.member(m) for m in range(net.num_members)]
    return None


def batched_network(model: nn.Module) -> nn.Module | None:
    """The parallel forward of ``model`` (see module doc); None when its members cannot be stacked."""
    if isinstance(model, ModuleEnsemble):
        try:
            return model.stacked()
        except (ValueError, RuntimeError):  # members of different structure: nothing to vectorise
            return None
    return model


def ms_per_image(fns: dict[str, Callable], x: torch.Tensor, iters: int, repeats: int) -> dict[str, float]:
    """Median ms per image of each callable (the interleaved timing of ``endist_vision.throughput``)."""
    return {k: 1000.0 / v for k, v in images_per_second(fns, x, iters, repeats).items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR[@MEMBERS]")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    dev = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    fns, info, shape = {}, {}, None
    for spec in a.run:
        label, _, rest = spec.partition("=")
        run, _, members = rest.partition("@")
        if not label or not run:
            p.error(f"--run {spec!r}: expected LABEL=RUN_DIR[@MEMBERS]")
        model, meta, _ = load_run_model(run, "--run")
        if members:
            model = model.subset(int(members))
        model = model.to(dev).eval()
        size = int(meta.get("image_size") or 32)
        s = (int(meta["in_channels"]), size, size)
        if shape is not None and s != shape:
            p.error(f"--run {label}: input shape {s} differs from {shape} of the other runs")
        shape = s
        info[label] = {"run": run, "members": int(getattr(model, "num_members", 1)), "batched_ms_per_img": None}
        batched = batched_network(model)
        if batched is not None:
            fns[f"{label}|batched"] = batched.to(dev).eval()
        parts = member_networks(model)
        if parts is not None:
            parts = [m.to(dev).eval() for m in parts]
            fns[f"{label}|multipass"] = lambda x, parts=parts: [part(x) for part in parts]
    x = torch.rand(a.batch_size, *shape, device=dev)
    res = ms_per_image(fns, x, a.iters, a.repeats)
    for key, v in res.items():
        label, mode = key.split("|")
        info[label][f"{mode}_ms_per_img"] = v
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    doc = {"device": name, "batch_size": a.batch_size, "input_shape": list(shape), "runs": info}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"inference ms/img on {name}, batch {a.batch_size}:")
    for label, r in info.items():
        mp = r.get("multipass_ms_per_img")
        bt = r["batched_ms_per_img"]
        print(f"  {label}: batched {'n/a' if bt is None else f'{bt:.4f}'}" + ("" if mp is None else f", {r['members']} passes {mp:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
