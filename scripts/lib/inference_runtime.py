"""Inference time (ms per image) of trained runs on one device ([LatentBE] Table 5), written as JSON.

    python scripts/lib/inference_runtime.py --out runtime.json [--device auto] [--batch-size 128] \\
        --run "DE-4 teacher=runs/.../ensemble" --run KD=runs/.../KD --run KD+BE=runs/.../KD_BE ...

Each run is loaded as `endist-vision evaluate` loads it (checkpoints/final.pt; `--members N` via
``LABEL=RUN_DIR@N`` for a teacher of the first N members) and timed on a random batch of its input shape
in eval mode under ``torch.inference_mode``
(``images_per_second`` of scripts/benchmarks/vision_inference.py):

* ``batched``   — one forward pass as the run's model is (a merged LatentBE student and a KD student are
                  one plain network; a BatchEnsemble student is the parallel pass over M·B rows; an
                  ensemble runs its members as the model does);
* ``multipass`` — only for multi-member models: M separate passes of batch B, one per member (for a
                  BatchEnsemble student member m is the plain network with weights W∘r_m s_mᵀ and bias b_m).

The median over ``--repeats`` rounds of ``--iters`` passes is reported (rounds interleaved over runs,
CUDA synchronised around each round).
Output: ``{"device": ..., "batch_size": B, "runs": {LABEL: {"batched_ms_per_img": .., "multipass_ms_per_img": ..,
"members": M, "run": DIR}}}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from endist_vision.checkpoint import load_run_model
from endist_vision.models import BatchEnsembleNet
from endist_vision.models.layers import be_layers, replace_with_plain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from vision_inference import images_per_second  # noqa: E402


def member_networks(model: nn.Module) -> list[nn.Module] | None:
    """The M single-member networks of a multi-member model (None for a single network)."""
    net = getattr(model, "net", model)
    if isinstance(net, BatchEnsembleNet):
        out = []
        for m in range(net.ensemble_size):
            body = copy.deepcopy(net.body)
            with torch.no_grad():
                for layer in be_layers(body):   # every member row := member m, so the factor average is member m
                    for p in (layer.fast_r, layer.fast_s, layer.member_bias):
                        if p is not None:
                            p.copy_(p[m:m + 1].clone().expand_as(p))
            plain = replace_with_plain(body)
            out.append(nn.Sequential(_Normalize(model), plain) if hasattr(model, "normalize") else plain)
        return out
    if int(getattr(model, "num_members", 1)) > 1 and hasattr(model, "subset"):
        members = getattr(model, "members", None)
        if members is not None:
            return list(members)
        return [model.subset(1)]  # cost of one member (the ensemble keeps no per-member modules)
    return None


class _Normalize(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.normalize(x)


def ms_per_image(fns: dict[str, Callable], x: torch.Tensor, iters: int, repeats: int) -> dict[str, float]:
    """Median ms per image of each callable (the interleaved timing of scripts/benchmarks/vision_inference.py)."""
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
        fns[f"{label}|batched"] = model
        info[label] = {"run": run, "members": int(getattr(model, "num_members", 1))}
        parts = member_networks(model)
        if parts is not None:
            parts = [m.to(dev).eval() for m in parts]
            reps = info[label]["members"] // len(parts)   # an ensemble without per-member modules: M × one member

            def multipass(x, parts=parts, reps=reps):
                return [part(x) for _ in range(reps) for part in parts]

            fns[f"{label}|multipass"] = multipass
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
        print(f"  {label}: batched {r['batched_ms_per_img']:.4f}" + ("" if mp is None else f", {r['members']} passes {mp:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
