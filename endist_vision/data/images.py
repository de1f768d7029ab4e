"""Real image data sets read from user-given local directories (never downloaded):
CIFAR-10/100 (the standard python-pickle folders), SVHN (``train_32x32.mat`` / ``test_32x32.mat``),
TinyImageNet (standard ``tiny-imagenet-200`` layout) and any ``ImageFolder`` tree (LSUN etc.) as OOD.
Images are kept as uint8 ``[N, H, W, C]`` and converted per batch. CIFAR batches are unpickled by
:mod:`.cifar_pickle` (numpy arrays only, no code runs); image files are decoded by :mod:`.decode`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .base import ArrayDataset, Source, register_dataset, require_dir, require_file
from .cifar_pickle import load_cifar_batch
from .decode import extensions_text, list_images, read_images

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
TIM_MEAN, TIM_STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


def _cifar_part(path: Path, label_key: bytes, flag: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[N, 32, 32, 3]`` images and int64 labels of one CIFAR batch file (read without running code)."""
    d = load_cifar_batch(path, flag)
    if b"data" not in d or label_key not in d:
        raise DatasetError(f"{flag}: {path} is not a CIFAR batch (keys {sorted(k.decode(errors='replace') for k in d)})")
    x = d[b"data"]
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DatasetError(f"{flag}: {path}: expected data of shape [N, 3072], got {x.shape}")
    if len(x) == 0:
        raise DatasetError(f"{flag}: {path} holds no images (data has shape {x.shape})")
    try:
        y = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{flag}: {path}: {label_key.decode()} must be a list of ints ({e})") from e
    if len(y) != len(x):
        raise DatasetError(f"{flag}: {path}: {len(x)} images but {len(y)} {label_key.decode()}")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y


def _cifar(root: str | None, flag: str, train_files: list[str], test_file: str, label_key: bytes, k: int, mean, std, name: str) -> Source:
    p = require_dir(root, flag, f"{name} python-pickle folder")
    parts = [_cifar_part(require_file(p / f, flag, f"{name} training batch"), label_key, flag) for f in train_files]
    xte, yte = _cifar_part(require_file(p / test_file, flag, f"{name} test batch"), label_key, flag)
    xtr = np.concatenate([a for a, _ in parts])
    ytr = np.concatenate([b for _, b in parts])
    for split, y in (("train", ytr), ("test", yte)):
        if y.min() < 0 or y.max() >= k:
            raise DatasetError(f"{flag}: {name} {split} labels span [{y.min()}, {y.max()}], expected {k} classes")
    return Source(test=ArrayDataset(xte, torch.from_numpy(yte), f"{name}_test"), train=ArrayDataset(xtr, torch.from_numpy(ytr), f"{name}_train"),
                  num_classes=k, mean=mean, std=std, in_channels=3, image_size=32,
                  val_split="last")  # [LatentBE] App. B.1: "the last 5,000 examples of the train split"


@register_dataset("cifar10")
def cifar10(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """``cifar-10-batches-py``: ``data_batch_1..5``, ``test_batch``."""
    return _cifar(root, flag, [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", 10, CIFAR10_MEAN, CIFAR10_STD, "cifar10")


@register_dataset("cifar100")
def cifar100(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """``cifar-100-python``: ``train``, ``test`` (fine labels)."""
    return _cifar(root, flag, ["train"], "test", b"fine_labels", 100, CIFAR100_MEAN, CIFAR100_STD, "cifar100")


@register_dataset("svhn")
def svhn(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """SVHN cropped digits: ``train_32x32.mat`` / ``test_32x32.mat`` (label 10 means digit 0)."""
    from scipy.io import loadmat

    p = require_dir(root, flag, "SVHN .mat folder")

    def part(fname: str) -> ArrayDataset:
        f = require_file(p / fname, flag, "SVHN split")
        try:
            m = loadmat(f)
            x = np.asarray(m["X"], dtype=np.uint8).transpose(3, 0, 1, 2).copy()
            y = np.asarray(m["y"], dtype=np.int64).reshape(-1) % 10
        except Exception as e:  # noqa: BLE001
            raise DatasetError(f"{flag}: cannot read SVHN file {f}: {type(e).__name__}: {e}") from e
        return ArrayDataset(x, torch.from_numpy(y), f"svhn_{fname.split('_')[0]}")

    train = part("train_32x32.mat") if (p / "train_32x32.mat").exists() else None
    return Source(test=part("test_32x32.mat"), train=train, num_classes=10, mean=SVHN_MEAN, std=SVHN_STD, in_channels=3, image_size=32)


@register_dataset("tinyimagenet")
def tinyimagenet(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """``tiny-imagenet-200``: ``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images`` +
    ``val/val_annotations.txt`` (the labelled val set is used as the test set)."""
    p = require_dir(root, flag, "TinyImageNet folder")
    wnids = require_file(p / "wnids.txt", flag, "TinyImageNet class list").read_text().split()
    index = {w: i for i, w in enumerate(wnids)}
    tr_paths, tr_y = [], []
    for w in wnids:
        d = p / "train" / w / "images"
        if not d.is_dir():
            raise DatasetError(f"{flag}: missing TinyImageNet training folder {d}")
        files = [d / f for f in list_images(d)]
        tr_paths += files
        tr_y += [index[w]] * len(files)
    ann = require_file(p / "val" / "val_annotations.txt", flag, "TinyImageNet val labels")
    te_paths, te_y = [], []
    for line in ann.read_text().splitlines():
        cols = line.split("\t")
        if len(cols) < 2 or cols[1] not in index:
            raise DatasetError(f"{flag}: malformed line in {ann}: {line!r}")
        te_paths.append(p / "val" / "images" / cols[0])
        te_y.append(index[cols[1]])
    size = image_size or 64
    return Source(
        test=ArrayDataset(read_images(te_paths, size, flag), torch.tensor(te_y), "tinyimagenet_test"),
        train=ArrayDataset(read_images(tr_paths, size, flag), torch.tensor(tr_y), "tinyimagenet_train"),
        num_classes=len(wnids), mean=TIM_MEAN, std=TIM_STD, in_channels=3, image_size=size,
        val_split="last_per_class",  # [LatentBE] App. B.1: the last examples of each class (train order = sorted files)
    )


@register_dataset("imagefolder")
def imagefolder(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """Any folder of images (recursively; e.g. LSUN test crops) used as an unlabeled OOD set,
    resized to the in-domain ``image_size``."""
    p = require_dir(root, flag, "image folder")
    files = [p / f for f in list_images(p, recursive=True)]
    if not files:
        raise DatasetError(f"{flag}={root}: no image files ({extensions_text()}) found")
    x = read_images(files, image_size, flag)
    return Source(test=ArrayDataset(x, torch.full((len(x),), -1, dtype=torch.long), p.name), image_size=image_size)
