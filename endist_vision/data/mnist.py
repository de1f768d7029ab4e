"""MNIST from the local IDX files (never downloaded), read with torchvision's IDX reader.

``ROOT`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (each optionally ``.gz``), either directly or in ``ROOT/MNIST/raw/``
(torchvision's ``MNIST(root)`` layout). Images are kept as uint8 ``[N, 28, 28, 1]``.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .base import ArrayDataset, Source, register_dataset, require_dir

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find(root: Path, name: str, flag: str) -> Path:
    for d in (root, root / "MNIST" / "raw", root / "raw"):
        for f in (d / name, d / f"{name}.gz"):
            if f.is_file():
                return f
    raise DatasetError(f"{flag}={root}: missing MNIST file {name}[.gz] (looked in ROOT and ROOT/MNIST/raw)")


def _read_idx(path: Path, images: bool, flag: str) -> torch.Tensor:
    """torchvision's ``read_image_file`` / ``read_label_file`` (a ``.gz`` file is decompressed first)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    reader = read_image_file if images else read_label_file
    try:
        if path.suffix != ".gz":
            return reader(str(path))
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / path.stem
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return reader(str(plain))
    except Exception as e:  # noqa: BLE001 - torchvision asserts on malformed headers
        raise DatasetError(f"{flag}: cannot read MNIST IDX file {path}: {type(e).__name__}: {e}") from e


def _split(root: Path, split: str, flag: str) -> ArrayDataset:
    img_name, lab_name = FILES[split]
    x = _read_idx(_find(root, img_name, flag), True, flag)
    y = _read_idx(_find(root, lab_name, flag), False, flag).long()
    if len(x) != len(y):
        raise DatasetError(f"{flag}={root}: MNIST {split}: {len(x)} images but {len(y)} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) > 9):
        raise DatasetError(f"{flag}={root}: MNIST {split} labels span [{int(y.min())}, {int(y.max())}], expected 0..9")
    return ArrayDataset(np.ascontiguousarray(x.numpy()[..., None]), y, f"mnist_{split}")


@register_dataset("mnist")
def mnist(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """MNIST 60k train / 10k test, 28×28×1 (use ``model.name=mlp model.kwargs.in_features=784`` for an MLP)."""
    p = require_dir(root, flag, "MNIST IDX folder")
    test, train = _split(p, "test", flag), _split(p, "train", flag)
    return Source(test=test, train=train, num_classes=10, mean=MNIST_MEAN, std=MNIST_STD, in_channels=1,
                  image_size=int(train.x.shape[1]))
