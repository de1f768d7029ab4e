"""Run configuration: defaults ← YAML recipe ← ``key.sub=value`` command-line overrides.

Unknown keys are rejected (a typo must not silently fall back to a default); values of overrides are
parsed as YAML (``train.lr=1e-3``, ``data.ood=[digits_noise]``, ``distill.teacher=runs/ens``).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"

DEFAULTS: dict[str, Any] = {
    "method": "individual",
    "seed": 0,
    "data": {
        "name": "digits",
        "root": None,
        "num_classes": None,     # optional check against the data set
        "val_size": 150,
        "split_seed": 0,
        "val_split": "auto",     # auto (the data set's paper split) | random | last | last_per_class
        "image_size": None,
        "augment": "none",       # none | cifar | shift | imagenet
        "aux": None,             # AUX transfer data (name or {name, root}); used by distillation methods
        "ood": [],               # evaluation OOD sets: names or {name, root, label}
        "shift": [],             # labelled shift sets: "NAME=DATASET:ROOT" or {name: DATASET, root, label, max_per_set}
        "shift_max_per_set": None,  # at most this many images per shift (sub)set (deterministic sample)
    },
    "model": {"name": "digits_cnn", "kwargs": {}},
    "train": {
        "epochs": 10,
        "max_steps": None,       # stop after this many optimiser steps (overrides epochs)
        "batch_size": 64,        # global batch (over DDP ranks and accumulation micro-batches)
        "accumulate": 1,
        "optimizer": "adam",     # adam | sgd
        "lr": 1e-3,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,
        "schedule": "onecycle",  # onecycle | cosine | constant
        "pct_start": 0.3,
        "warmup_epochs": 0,      # linear LR warm-up before cosine|constant ([LatentBE] App. B.2: 5 epochs)
        "warmup_steps": None,    # warm-up length in optimiser steps (overrides warmup_epochs)
        "warmup_start_factor": 0.01,  # warm-up starts at this × lr ([LatentBE] App. B.2: 0.01 × base_lr)
        "amp": "none",           # none | bf16 | fp16 (CUDA only)
        "device": "auto",        # auto | cpu | cuda
        "num_workers": 0,
        "ckpt_every": 0,         # steps between resumable checkpoints (0: end of each epoch)
        "log_every": 10,
        "val_every": 1,          # epochs between the validation scalars of tensorboard (0: only the final model's)
        "progress": None,        # progress bar: null = --progress / ENDIST_PROGRESS / auto (terminal only), true, false
        "dist_timeout_s": 1800,  # torchrun: seconds a rank waits for the others before stopping with an error
    },
    "distill": {
        "teacher": None,         # run dir or list of run dirs
        "teacher_members": None, # keep the first N teacher members
        "teacher_mode": "cached",  # cached ([EnD2] App. A) | online | topk_cache (compact records on disk)
        "topk": 64,              # topk_cache: classes kept per image (top-k of the ensemble mean; >= K keeps all)
        "teacher_cache": None,   # topk_cache: cache directory (null: RUN/teacher_cache); reused when it matches
    },
    "method_args": {},
    "eval": {"batch_size": 512, "grid_size": 120, "grid_extent": 2.5,
             "num_workers": None},  # evaluation decoding workers (None: train.num_workers)
}

FREE_FORM = {("method_args",), ("model", "kwargs")}


def _merge(base: dict[str, Any], upd: dict[str, Any], path: tuple[str, ...], source: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (upd or {}).items():
        p = path + (k,)
        if path in FREE_FORM:  # inside a free-form mapping (method_args, model.kwargs): any key;
            if v is None:      # `model.kwargs.dropout=null` removes a key set by the recipe
                out.pop(k, None)
            else:
                out[k] = v
            continue
        if k not in out:
            raise ConfigError(f"{source}: unknown config key {'.'.join(p)!r}")
        if isinstance(out[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {'.'.join(p)} must be a mapping, got {v!r}")
            out[k] = _merge(out[k], v, p, source)
        else:
            out[k] = v
    return out


def resolve_recipe(name_or_path: str) -> Path:
    """A recipe path, or a name under ``endist_vision/configs`` (``spirals/end2`` → ``spirals_end2.yaml``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    cand = CONFIG_DIR / (name_or_path.replace("/", "_") + ("" if name_or_path.endswith(".yaml") else ".yaml"))
    if cand.is_file():
        return cand
    raise ConfigError(f"--config {name_or_path}: no such file or recipe (recipes: {', '.join(sorted(f.stem for f in CONFIG_DIR.glob('*.yaml')))})")


def load_yaml(path: Path, flag: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{flag} {path}: cannot parse YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{flag} {path}: top level must be a mapping")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.lr=0.1", "method=end"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"override {it!r}: expected key=value")
        key, val = it.split("=", 1)
        try:
            v = yaml.safe_load(val) if val != "" else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key}: cannot parse value {val!r}: {e}") from e
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: conflicts with another override")
        node[parts[-1]] = v
    return out


def build_config(recipe: str | None, overrides: list[str]) -> dict[str, Any]:
    """Defaults ← recipe ← overrides, validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if recipe:
        path = resolve_recipe(recipe)
        cfg = _merge(cfg, load_yaml(path, "--config"), (), f"--config {path}")
    cfg = _merge(cfg, parse_overrides(overrides), (), "command line")
    validate(cfg)
    return cfg


#: The value kind of each key whose default is ``None`` (``null`` stays allowed for them); every other key
#: takes the kind of its default (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``), not ``null``.
NULLABLE_KINDS: dict[str, str] = {
    "data.root": "str", "data.num_classes": "int", "data.image_size": "int", "data.aux": "spec",
    "data.shift_max_per_set": "int", "train.max_steps": "int", "train.warmup_steps": "int", "distill.teacher": "paths",
    "distill.teacher_members": "int", "distill.teacher_cache": "str", "eval.num_workers": "int",
    "train.progress": "bool",
}
KIND_TEXT = {"int": "an integer", "float": "a number (float)", "str": "a string", "bool": "true or false", "list": "a list",
             "dict": "a mapping", "spec": "a data set name or {name, root}", "paths": "a run directory, a teacher YAML file, a {model, kwargs, weights} entry or a list of them"}


def _kind_of(key: str, default: Any) -> str | None:
    if key in NULLABLE_KINDS:
        return NULLABLE_KINDS[key]
    for kind, typ in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list), ("dict", dict)):
        if isinstance(default, typ):
            return kind
    return None  # a key without a known kind (default None, not in NULLABLE_KINDS): any value


def _coerce(key: str, kind: str, value: Any) -> Any:
    """``value`` checked against ``kind`` (numbers written as YAML strings, e.g. ``1e-3``, become floats; a
    number given for a string key, e.g. a folder named ``2024``, becomes that string); else :class:`ConfigError`."""
    ok: Any = None
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        ok = value
    elif kind == "float" and not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            ok = float(value)
        except ValueError:
            ok = None
    elif kind == "str" and not isinstance(value, bool) and isinstance(value, (str, int, float)):
        ok = str(value)
    elif kind in ("bool", "list", "dict"):
        ok = value if isinstance(value, {"bool": bool, "list": list, "dict": dict}[kind]) else None
    elif kind == "spec" and isinstance(value, (str, dict)):
        ok = value
    elif kind == "paths" and (isinstance(value, (str, dict)) or (isinstance(value, list) and all(isinstance(v, (str, dict)) for v in value))):
        ok = value
    if ok is None:
        raise ConfigError(f"{key} must be {KIND_TEXT[kind]}, got {value!r}")
    return ok


def _check_finite(key: str, value: Any) -> None:
    """NaN / ±Inf anywhere in ``value`` (also inside lists and mappings) is a :class:`ConfigError` naming the key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(f"{key}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(f"{key}[{i}]", v)


def check_types(cfg: dict[str, Any], defaults: dict[str, Any] = DEFAULTS, path: tuple[str, ...] = ()) -> None:
    """Check (and normalise in place) every known key of ``cfg`` against the kind of its default
    (:data:`NULLABLE_KINDS` for keys whose default is ``None``) and refuse NaN/Inf values; one
    :class:`ConfigError` naming the key and the expected kind. ``method_args`` is left to the method."""
    for k, default in defaults.items():
        key = ".".join(path + (k,))
        if k not in cfg or path + (k,) == ("method_args",):
            continue
        v = cfg[k]
        if isinstance(default, dict) and path + (k,) not in FREE_FORM:
            if not isinstance(v, dict):
                raise ConfigError(f"{key} must be a mapping, got {v!r}")
            check_types(v, default, path + (k,))
            continue
        kind = _kind_of(key, default)
        if kind is not None and not (v is None and key in NULLABLE_KINDS):
            cfg[k] = v = _coerce(key, kind, v)
        _check_finite(key, v)


def validate(cfg: dict[str, Any]) -> None:
    """Types (:func:`check_types`, normalising ``cfg`` in place), then the allowed values and ranges."""
    check_types(cfg)
    t = cfg["train"]
    # run configs saved before the warm-up keys existed lack them (resume / evaluate): the defaults apply
    we, ws, wf = t.get("warmup_epochs", 0), t.get("warmup_steps"), t.get("warmup_start_factor", 0.01)
    checks = [
        (t["batch_size"] > 0, f"train.batch_size must be > 0, got {t['batch_size']}"),
        (t["accumulate"] >= 1, f"train.accumulate must be >= 1, got {t['accumulate']}"),
        (t["max_steps"] is None or t["max_steps"] >= 1, f"train.max_steps must be >= 1 (or null), got {t['max_steps']}"),
        (t["optimizer"] in ("adam", "sgd", "adamw"), f"train.optimizer must be adam|adamw|sgd, got {t['optimizer']!r}"),
        (t["schedule"] in ("onecycle", "cosine", "constant"), f"train.schedule must be onecycle|cosine|constant, got {t['schedule']!r}"),
        (t["amp"] in ("none", "bf16", "fp16"), f"train.amp must be none|bf16|fp16, got {t['amp']!r}"),
        (t["lr"] > 0, f"train.lr must be > 0, got {t['lr']}"),
        (t.get("val_every", 1) >= 0, f"train.val_every must be >= 0, got {t.get('val_every')}"),
        (we >= 0, f"train.warmup_epochs must be >= 0, got {we}"),
        (ws is None or ws >= 0, f"train.warmup_steps must be >= 0 (or null), got {ws}"),
        (0 < wf <= 1, f"train.warmup_start_factor must be in (0, 1], got {wf}"),
        (t["schedule"] != "onecycle" or not (we or ws),
         "train.warmup_epochs/warmup_steps: schedule=onecycle has its own warm-up (pct_start); use train.schedule=cosine|constant"),
        (cfg["distill"]["teacher_mode"] in ("cached", "online", "topk_cache"),
         f"distill.teacher_mode must be cached|online|topk_cache, got {cfg['distill']['teacher_mode']!r}"),
        (cfg["distill"].get("topk", 64) >= 1, f"distill.topk must be >= 1, got {cfg['distill'].get('topk')}"),
        (cfg["data"].get("val_split", "random") in ("auto", "random", "last", "last_per_class"),
         f"data.val_split must be auto|random|last|last_per_class, got {cfg['data'].get('val_split')!r}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
