"""Teachers trained elsewhere: ``distill.teacher`` entries ``{model, kwargs, weights[, mean, std]}``.

An entry names a registry model or ``timm/<arch>`` (:mod:`endist_vision.models.timm_models`), its keyword
arguments (as ``model.kwargs``) and a weights file, loaded with ``torch.load(weights_only=True)``; accepted
layouts: a plain state_dict, ``{'state_dict': sd}``, ``{'model': sd}`` (endist's ``final.pt`` too), each with
or without the ``module.`` prefix of DDP. The network is built for the data set's class count and input
channels and normalised with the data set's mean/std (or the entry's ``mean``/``std``), then checked: the weights
must fit (a different class count is named as such) and a forward pass on the data's input size must give
``[B, K]`` or ``[B, M, K]`` logits. Any failure is one :class:`ConfigError` line naming the entry.

A YAML file of entries (a list, or ``{teachers: [...]}``) may stand wherever a run directory may; relative
``weights`` paths in it are relative to the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .errors import ConfigError

ENTRY_KEYS = {"model", "kwargs", "weights", "mean", "std"}


def is_teacher_file(spec: Any) -> bool:
    """A path to a YAML file of teacher entries (not a run directory)."""
    return isinstance(spec, str) and Path(spec).suffix in (".yaml", ".yml") and not Path(spec).is_dir()


def read_teacher_file(path: str, flag: str) -> list[dict[str, Any]]:
    """The entries of a YAML teacher file, ``weights`` made absolute relative to the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{flag}={path}: teacher file does not exist")
    try:
        doc = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{flag}={path}: cannot parse the YAML ({str(e).splitlines()[0]})") from e
    entries = doc.get("teachers") if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{flag}={path}: expected a list of {{model, kwargs, weights}} entries (or {{teachers: [...]}})")
    out = []
    for e in entries:
        e = dict(e)
        if isinstance(e.get("weights"), str) and not Path(e["weights"]).expanduser().is_absolute():
            e["weights"] = str((p.parent / e["weights"]).resolve())
        out.append(e)
    return out


def load_external_teacher(entry: dict[str, Any], label: str, num_classes: int, in_channels: int,
                          input_shape: tuple[int, ...], mean: list[float], std: list[float]) -> nn.Module:
    """Build, load and check one entry (``label`` names it in errors, e.g. ``distill.teacher[1]``)."""
    from .models import create_model

    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {unknown} (allowed: {sorted(ENTRY_KEYS)})")
    name, weights, kwargs = entry.get("model"), entry.get("weights"), entry.get("kwargs") or {}
    if not isinstance(name, str) or not isinstance(weights, str) or not isinstance(kwargs, dict):
        raise ConfigError(f"{label}: needs model: <name or timm/<arch>>, weights: <path> and optional kwargs: {{...}}")
    what = f"{label} ({name}, {weights})"
    try:
        model = create_model(name, num_classes, mean=entry.get("mean") or mean, std=entry.get("std") or std,
                             in_channels=in_channels, weights=weights, **kwargs)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{what}: {str(e.args[0] if e.args else e).splitlines()[0]}") from e
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except RuntimeError as e:
        raise ConfigError(f"{what}: fails on the data set's input size {list(input_shape)} "
                          f"({str(e).splitlines()[0][:200]})") from e
    if out.dim() not in (2, 3) or out.shape[-1] != num_classes:
        raise ConfigError(f"{what}: gives outputs {list(out.shape)}, expected [B, {num_classes}] or [B, M, {num_classes}]")
    return model
