"""Labelled distribution-shift sets (evaluated for accuracy / NLL / ECE / Brier, unlike the unlabeled OOD
sets of ``data.ood``), configured by ``data.shift`` or ``endist-vision evaluate --shift NAME=DATASET:ROOT``.

Registered shift data sets (``@register_shift``):

* ``imagenet_a``, ``imagenet_r`` — ``ROOT/<wnid>/*.jpg`` with a subset of the in-domain wnids (200 for
  the real sets). Labels are mapped to the model's class indices *by wnid*, and evaluation restricts the
  predictions to the logits of the wnids present (``class_index``), as Hendrycks et al. do.
* ``imagenet_c`` — ``ROOT/<corruption>/<severity 1..5>/<wnid>/*.JPEG``, mapped by wnid (all classes
  kept); one subset per (corruption, severity), lazily decoded.
* ``cifar10_c``, ``cifar100_c`` — ``ROOT/<corruption>.npy`` (uint8 ``[5·n, 32, 32, 3]``: severities 1..5
  in consecutive blocks of n = 10000) and ``ROOT/labels.npy``; every ``*.npy`` but ``labels.npy`` is a
  corruption; memory-mapped, one subset per (corruption, severity).

``max_per_set`` keeps a deterministic random sample (seeded by data set and subset name, the same for
every model) of at most that many images per subset (full ImageNet-C has 3.75 M images).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..errors import DatasetError
from ..registry import Registry
from .base import ArrayDataset, DataBundle, require_dir
from .files import FileDataset, scan_class_folders


@dataclass
class ShiftSet:
    """A labelled shift set: ``subsets`` maps ``""`` (single set) or ``"corruption/severity"`` to a data
    set whose labels index ``class_index`` (if given: the model's logits are restricted to these class
    indices, labels are positions in it) or the model's classes directly (``class_index is None``)."""

    label: str
    dataset: str
    subsets: dict[str, Any]
    class_index: Optional[np.ndarray] = None
    corrupted: bool = False


ShiftLoader = Callable[..., ShiftSet]
SHIFTS: Registry[ShiftLoader] = Registry("shift set")


def register_shift(name: str) -> Callable[[ShiftLoader], ShiftLoader]:
    """Register ``loader(root, *, flag, label, bundle: DataBundle) -> ShiftSet`` under ``name`` (a name
    taken by another loader raises ``ValueError``)."""
    return SHIFTS.register(name)


def available_shift_sets() -> list[str]:
    return SHIFTS.names()


# ---------------------------------------------------------------- specs
def parse_shift_spec(item: Any, flag: str) -> dict[str, Any]:
    """``"NAME=DATASET:ROOT"`` or ``{name: DATASET, root: ROOT, label: NAME, max_per_set: N}`` →
    ``{label, dataset, root, max_per_set}``."""
    if isinstance(item, str):
        if "=" not in item or ":" not in item.split("=", 1)[1]:
            raise DatasetError(f"{flag}: expected NAME=DATASET:ROOT (datasets: {', '.join(available_shift_sets())}), got {item!r}")
        label, rest = item.split("=", 1)
        ds, root = rest.split(":", 1)
        return {"label": label, "dataset": ds, "root": root, "max_per_set": None}
    if isinstance(item, dict) and "name" in item and "root" in item:
        return {"label": item.get("label", item["name"]), "dataset": item["name"], "root": item["root"],
                "max_per_set": item.get("max_per_set")}
    raise DatasetError(f"{flag}: expected NAME=DATASET:ROOT or {{name, root, label, max_per_set}}, got {item!r}")


def load_shift_sets(items: list[Any], bundle: DataBundle, max_per_set: int | None = None, flag: str = "data.shift") -> dict[str, ShiftSet]:
    """Load (index; nothing decoded) every shift set of ``items`` for a model trained on ``bundle``."""
    out: dict[str, ShiftSet] = {}
    for i, item in enumerate(items or []):
        f = f"{flag}[{i}]"
        spec = parse_shift_spec(item, f)
        if spec["dataset"] not in SHIFTS:
            raise DatasetError(f"{f}: unknown shift data set {spec['dataset']!r}; available: {', '.join(available_shift_sets())}")
        if spec["label"] in out:
            raise DatasetError(f"{f}: shift set name {spec['label']!r} is used twice")
        s = SHIFTS.get(spec["dataset"])(spec["root"], flag=f"{f} ({spec['label']}={spec['dataset']}:ROOT)", label=spec["label"], bundle=bundle)
        cap = spec["max_per_set"] if spec["max_per_set"] is not None else max_per_set
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise DatasetError(f"{f}: max_per_set must be an integer >= 1, got {cap!r}")
            s.subsets = {k: subsample(ds, cap, f"{s.dataset}/{k}") for k, ds in s.subsets.items()}
        out[spec["label"]] = s
    return out


def subsample(ds: Any, k: int, key: str) -> Any:
    """At most ``k`` items of ``ds``: a sorted random sample seeded by ``crc32(key)`` (model independent)."""
    if len(ds) <= k:
        return ds
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return ds.subset(np.sort(rng.choice(len(ds), k, replace=False)))


# ---------------------------------------------------------------- checks
def _wnid_map(bundle: DataBundle, wnids: list[str], flag: str, root: Path) -> np.ndarray:
    """Model class index of each wnid (:class:`DatasetError` if the model's classes lack one)."""
    if not bundle.classes:
        raise DatasetError(f"{flag}: data set {bundle.name!r} has no class names (wnids), so {root} cannot be mapped to its classes "
                           "(train on data.name=imagenet)")
    index = {w: i for i, w in enumerate(bundle.classes)}
    missing = [w for w in wnids if w not in index]
    if missing:
        raise DatasetError(f"{flag}: class folders of {root} not among the {len(index)} classes of {bundle.name}: "
                           f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return np.array([index[w] for w in wnids], dtype=np.int64)


def _check_shape(bundle: DataBundle, shape: tuple[int, ...], flag: str, root: Path) -> None:
    want = tuple(bundle.train.input_shape)
    if tuple(shape) != want:
        raise DatasetError(f"{flag}: inputs of {root} have shape {tuple(shape)} but the model's data set {bundle.name} has {want}")


def _image_size(bundle: DataBundle, flag: str) -> int:
    if bundle.image_size is None or bundle.in_channels != 3:
        raise DatasetError(f"{flag}: needs a model trained on RGB images (data set {bundle.name!r} has {bundle.in_channels} channels)")
    return int(bundle.image_size)


# ---------------------------------------------------------------- ImageNet-A / -R / -C
def _restricted_imagenet(root: str | None, flag: str, label: str, bundle: DataBundle, what: str, dataset: str) -> ShiftSet:
    p = require_dir(root, flag, f"{what} folder ROOT/<wnid>/*.jpg")
    size = _image_size(bundle, flag)
    wnids, files, y = scan_class_folders(p, flag, what)
    model_idx = _wnid_map(bundle, wnids, flag, p)
    order = np.argsort(model_idx, kind="stable")
    class_index = model_idx[order]                       # kept logits, in model class order
    pos = np.empty(len(wnids), dtype=np.int64)
    pos[order] = np.arange(len(wnids))                    # folder c -> position of its logit in class_index
    ds = FileDataset(p, files, pos[y], label, size, flag)
    _check_shape(bundle, ds.input_shape, flag, p)
    return ShiftSet(label, dataset, {"": ds}, class_index, corrupted=False)


@register_shift("imagenet_a")
def imagenet_a(root: str | None, *, flag: str, label: str, bundle: DataBundle) -> ShiftSet:
    """ImageNet-A (natural adversarial examples, 200 wnids); predictions restricted to the present wnids."""
    return _restricted_imagenet(root, flag, label, bundle, "ImageNet-A", "imagenet_a")


@register_shift("imagenet_r")
def imagenet_r(root: str | None, *, flag: str, label: str, bundle: DataBundle) -> ShiftSet:
    """ImageNet-R (renditions, 200 wnids); predictions restricted to the present wnids."""
    return _restricted_imagenet(root, flag, label, bundle, "ImageNet-R", "imagenet_r")


def _subdirs(p: Path) -> list[str]:
    return sorted(d.name for d in p.iterdir() if d.is_dir())


@register_shift("imagenet_c")
def imagenet_c(root: str | None, *, flag: str, label: str, bundle: DataBundle) -> ShiftSet:
    """ImageNet-C ``ROOT/<corruption>/<severity>/<wnid>/*.JPEG``; every corruption × severity a subset."""
    p = require_dir(root, flag, "ImageNet-C folder ROOT/<corruption>/<severity>/<wnid>/*.JPEG")
    size = _image_size(bundle, flag)
    corruptions = _subdirs(p)
    if not corruptions:
        raise DatasetError(f"{flag}: {p} has no corruption folders (ImageNet-C layout ROOT/<corruption>/<severity>/<wnid>/*.JPEG)")
    subsets: dict[str, Any] = {}
    for c in corruptions:
        sev = [s for s in _subdirs(p / c) if s.isdigit()]
        if not sev:
            raise DatasetError(f"{flag}: corruption folder {p / c} has no severity folders 1..5")
        for s in sorted(sev, key=int):
            d = p / c / s
            wnids, files, y = scan_class_folders(d, flag, "ImageNet-C")
            ds = FileDataset(d, files, _wnid_map(bundle, wnids, flag, d)[y], f"{label}/{c}/{s}", size, flag)
            subsets[f"{c}/{int(s)}"] = ds
    _check_shape(bundle, next(iter(subsets.values())).input_shape, flag, p)
    return ShiftSet(label, "imagenet_c", subsets, None, corrupted=True)


# ---------------------------------------------------------------- CIFAR-10-C / CIFAR-100-C
def _cifar_c(root: str | None, flag: str, label: str, bundle: DataBundle, k: int, what: str, dataset: str) -> ShiftSet:
    p = require_dir(root, flag, f"{what} folder with <corruption>.npy and labels.npy")
    if bundle.num_classes != k:
        raise DatasetError(f"{flag}: {what} has {k} classes but the model's data set {bundle.name!r} has {bundle.num_classes}")
    lab_f = p / "labels.npy"
    if not lab_f.is_file():
        raise DatasetError(f"{flag}: missing file {lab_f} ({what} labels)")
    files = sorted(f for f in p.glob("*.npy") if f.name != "labels.npy")
    if not files:
        raise DatasetError(f"{flag}: {p} has no <corruption>.npy files ({what})")
    try:
        labels = np.load(lab_f, allow_pickle=False).astype(np.int64).reshape(-1)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{flag}: cannot read {lab_f}: {e}") from e
    if len(labels) % 5 or len(labels) == 0:
        raise DatasetError(f"{flag}: {lab_f} has {len(labels)} labels, expected 5 severity blocks (5 × 10000)")
    if labels.min() < 0 or labels.max() >= k:
        raise DatasetError(f"{flag}: {lab_f} labels span [{labels.min()}, {labels.max()}], expected {k} classes")
    n = len(labels) // 5
    subsets: dict[str, Any] = {}
    for f in files:
        try:
            x = np.load(f, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{flag}: cannot read {f}: {e}") from e
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[0] != len(labels) or x.shape[3] != 3:
            raise DatasetError(f"{flag}: {f} has shape {x.shape} / dtype {x.dtype}, expected uint8 [{len(labels)}, H, W, 3]")
        for s in range(1, 6):
            sl = slice((s - 1) * n, s * n)
            subsets[f"{f.stem}/{s}"] = ArrayDataset(x[sl], torch.from_numpy(labels[sl].copy()), f"{label}/{f.stem}/{s}")
    _check_shape(bundle, next(iter(subsets.values())).input_shape, flag, p)
    return ShiftSet(label, dataset, subsets, None, corrupted=True)


@register_shift("cifar10_c")
def cifar10_c(root: str | None, *, flag: str, label: str, bundle: DataBundle) -> ShiftSet:
    """CIFAR-10-C (Hendrycks & Dietterich): 19 corruptions × 5 severities of the 10000 test images."""
    return _cifar_c(root, flag, label, bundle, 10, "CIFAR-10-C", "cifar10_c")


@register_shift("cifar100_c")
def cifar100_c(root: str | None, *, flag: str, label: str, bundle: DataBundle) -> ShiftSet:
    """CIFAR-100-C: the same corruptions of the CIFAR-100 test images."""
    return _cifar_c(root, flag, label, bundle, 100, "CIFAR-100-C", "cifar100_c")
