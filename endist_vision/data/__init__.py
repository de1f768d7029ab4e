"""Data: embedded digits/spirals, local CIFAR/SVHN/TinyImageNet/ImageFolder/MNIST, lazily decoded
ImageNet (+ ImageNet-O), labelled shift sets (:mod:`.shift`: ImageNet-A/R/C, CIFAR-10/100-C), fixed
train/val split, augmentation and deterministic batching. Entry point: :func:`load_dataset`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DatasetError
from . import embedded, imagenet, images, mnist  # noqa: F401  (registers the built-in data sets)
from .base import ArrayDataset, DataBundle, Dataset, Source, available_datasets, concat, get_loader, register_dataset
from .files import FileDataset
from .shift import ShiftSet, available_shift_sets, load_shift_sets, register_shift


VAL_SPLITS = ("auto", "random", "last", "last_per_class")


def val_indices(y: np.ndarray, val_size: int, mode: str, seed: int, name: str = "train") -> np.ndarray:
    """Sorted indices of the validation split of a training set with labels ``y`` (``len(y) = n``):

    * ``random``: ``val_size`` indices drawn by a permutation seeded by ``seed`` (``data.split_seed``);
    * ``last``: the last ``val_size`` indices ``n − val_size … n − 1`` ([LatentBE] App. B.1, CIFAR-10/100: "the last
      5,000 examples of the train split are used as the validation split");
    * ``last_per_class``: the last ``val_size / K`` indices of every class (in training-set order), K the number of
      classes present ([LatentBE] App. B.1, TinyImageNet: "the last 500 examples for each class ... train and
      validation split consists of 90,000 and 10,000 examples" — the counts imply 50 per class, 10,000 in all;
      500 per class would be the whole set). ``val_size`` must be a multiple of K.
    """
    n = len(y)
    if not 0 < val_size < n:
        raise DatasetError(f"data.val_size={val_size} must be in (0, {n}) for {name}")
    if mode == "random":
        return np.sort(np.random.default_rng(seed).permutation(n)[:val_size])
    if mode == "last":
        return np.arange(n - val_size, n)
    if mode == "last_per_class":
        classes = np.unique(y)
        per, rest = divmod(val_size, len(classes))
        if rest:
            raise DatasetError(f"data.val_size={val_size} must be a multiple of the {len(classes)} classes of {name} "
                               "for data.val_split=last_per_class")
        out = []
        for c in classes:
            idx = np.flatnonzero(y == c)
            if len(idx) <= per:
                raise DatasetError(f"data.val_size={val_size}: class {c} of {name} has {len(idx)} images, "
                                   f"not more than the {per} per class data.val_split=last_per_class takes")
            out.append(idx[-per:])
        return np.sort(np.concatenate(out))
    raise DatasetError(f"data.val_split must be one of {'|'.join(VAL_SPLITS)}, got {mode!r}")


def _split_val(train: Dataset, val_size: int, seed: int, mode: str = "random") -> tuple[Dataset, Dataset]:
    """Fixed split shared by teachers and students (e.g. 45k/5k on CIFAR), see :func:`val_indices`."""
    val = val_indices(train.y.numpy(), val_size, mode, seed, train.name)
    keep = np.setdiff1d(np.arange(len(train)), val)
    return train.subset(keep, train.name), train.subset(val, train.name.replace("train", "val"))


def _spec(item: Any, flag: str) -> tuple[str, str | None, str]:
    """An OOD/AUX spec: ``"name"`` or ``{name, root, label}``."""
    if isinstance(item, str):
        return item, None, item
    if isinstance(item, dict) and "name" in item:
        return item["name"], item.get("root"), item.get("label", item["name"])
    raise DatasetError(f"{flag}: expected a dataset name or {{name, root, label}}, got {item!r}")


def load_dataset(data_cfg: dict[str, Any], *, with_ood: bool = True) -> DataBundle:
    """Load the in-domain set, split off validation, and load ``aux`` and ``ood`` sets.

    Checks: the data set's class count matches ``data.num_classes`` when given; OOD images are resized
    to the in-domain size (image folders) and must have the in-domain channel count.
    """
    name = data_cfg["name"]
    src: Source = get_loader(name, "data.name")(data_cfg.get("root"), flag="data.root", image_size=data_cfg.get("image_size"))
    if src.train is None:
        raise DatasetError(f"data.name={name}: has no training split (evaluation-only set)")
    want = data_cfg.get("num_classes")
    if want is not None and int(want) != src.num_classes:
        raise DatasetError(f"data.num_classes={want} but data set {name!r} has {src.num_classes} classes")
    # data.val_split: auto = the split of the data set's reference paper (Source.val_split); a run config saved
    # before the key existed was split at random, so a missing key stays "random" (its evaluation sees its val set)
    mode = data_cfg.get("val_split", "random")
    mode = src.val_split if mode == "auto" else mode
    train, val = _split_val(src.train, int(data_cfg["val_size"]), int(data_cfg.get("split_seed", 0)), mode)
    bundle = DataBundle(name=name, train=train, val=val, test=src.test, num_classes=src.num_classes, mean=tuple(src.mean), std=tuple(src.std),
                        in_channels=src.in_channels, input_kind=src.input_kind, image_size=src.image_size,
                        classes=list(src.classes) if src.classes else None)
    if data_cfg.get("aux"):
        an, aroot, _ = _spec(data_cfg["aux"], "data.aux")
        asrc = get_loader(an, "data.aux").__call__(aroot, flag="data.aux.root", image_size=src.image_size)
        aux = asrc.train if asrc.train is not None else asrc.test
        bundle.aux = aux.unlabeled(f"aux_{an}")  # AUX is unlabeled
        _check_compatible(bundle, bundle.aux, "data.aux")
    if with_ood:
        for i, item in enumerate(data_cfg.get("ood") or []):
            on, oroot, label = _spec(item, f"data.ood[{i}]")
            osrc = get_loader(on, f"data.ood[{i}]")(oroot, flag=f"data.ood[{i}].root", image_size=src.image_size)
            ds = osrc.test.unlabeled(label)
            _check_compatible(bundle, ds, f"data.ood[{i}]")
            bundle.ood[label] = ds
    return bundle


def _check_compatible(bundle: DataBundle, ds: Dataset, flag: str) -> None:
    a, b = bundle.train.input_shape, ds.input_shape
    if tuple(a) != tuple(b):
        raise DatasetError(f"{flag}: inputs of {ds.name} have shape {tuple(b)} but {bundle.name} has {tuple(a)}")


__all__ = ["ArrayDataset", "DataBundle", "Dataset", "FileDataset", "ShiftSet", "Source", "available_datasets", "available_shift_sets", "concat",
           "load_dataset", "load_shift_sets", "register_dataset", "register_shift"]
