"""Checkpoints and run directories.

Run directory layout::

    RUN/config.yaml            resolved config (written once, atomically)
    RUN/checkpoints/last.pt    resumable state: model, optimiser, scheduler, scaler, step, RNG, method state
    RUN/checkpoints/final.pt   final model (after ``post_train``) + meta, for evaluation / as a teacher
    RUN/metrics.json           training history and final validation metrics
    RUN/tb/                    tensorboard events
    RUN/eval/                  default output folder of ``endist-vision evaluate``

All files are written to a temp name and renamed. Checkpoints are loaded with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .errors import CheckpointError, ConfigError

FORMAT = 1


def check_output_dir(path: str | Path, flag: str) -> None:
    """``path`` can be (or already is) a writable directory: no regular file on the way and its nearest
    existing ancestor writable; else a one-line :class:`ConfigError` naming ``flag``."""
    p = Path(path).expanduser().absolute()
    for parent in (p, *p.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a regular file" if parent == p else f"lies under the regular file {parent}"
                raise ConfigError(f"{flag} {path}: {what}, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {path}: directory {parent} is not writable")
            return


def make_output_dir(path: str | Path, flag: str) -> Path:
    """Create the output directory ``path`` (with parents); a one-line :class:`ConfigError` if it cannot be."""
    check_output_dir(path, flag)
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create the directory ({e.strerror or e})") from e
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file; :class:`CheckpointError` naming the file if missing/corrupt/foreign."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means an unreadable file
        raise CheckpointError(f"checkpoint {p} is corrupt or unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT or "model" not in ck or "meta" not in ck:
        raise CheckpointError(f"checkpoint {p} is not an endist-vision checkpoint (format {FORMAT})")
    return ck


def read_run_config(run_dir: str | Path, flag: str = "--run") -> dict[str, Any]:
    p = Path(run_dir)
    if not p.is_dir():
        raise CheckpointError(f"{flag} {p}: run directory does not exist")
    cfg_path = p / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"{flag} {p}: no config.yaml (not a run directory)")
    try:
        cfg = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{flag} {cfg_path}: cannot parse: {e}") from e
    if not isinstance(cfg, dict) or "method" not in cfg:
        raise CheckpointError(f"{flag} {cfg_path}: not an endist-vision run config")
    return cfg


def build_model_from_meta(cfg: dict[str, Any], meta: dict[str, Any]) -> nn.Module:
    """Rebuild the (untrained) network structure of a run from its config and checkpoint meta."""
    from .methods import get_method
    from .models import create_model

    try:
        method = get_method(cfg["method"])(cfg, int(meta["num_classes"]), 1)
    except KeyError as e:
        raise ConfigError(str(e)) from e

    def make_model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        kwargs = {k: v for k, v in (cfg["model"].get("kwargs") or {}).items() if k != "weights"}  # trained weights follow
        return create_model(cfg["model"]["name"], int(meta["num_classes"]), mean=meta["mean"], std=meta["std"],
                            in_channels=int(meta["in_channels"]), **kwargs)

    return method.build_final(make_model)


def load_run_model(run_dir: str | Path, flag: str = "--run", which: str = "final") -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model in eval mode on CPU, meta, config) of a finished run."""
    from .methods import resolved_run_config

    cfg = read_run_config(run_dir, flag)
    ck_path = Path(run_dir) / "checkpoints" / f"{which}.pt"
    if not ck_path.is_file():
        raise CheckpointError(f"{flag} {run_dir}: no {which} checkpoint {ck_path} (training not finished?)")
    ck = load_checkpoint(ck_path)
    cfg = resolved_run_config(cfg, ck["meta"])  # method_args as trained (e.g. members resolved from the teacher)
    model = build_model_from_meta(cfg, ck["meta"])
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {ck_path} does not match the model of {run_dir}/config.yaml: {str(e)[:300]}") from e
    model.eval()
    return model, ck["meta"], cfg
