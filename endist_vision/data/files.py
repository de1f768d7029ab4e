"""Lazily decoded image-file data sets (ImageNet scale): only file names and labels are held in memory;
images are decoded with PIL when a batch is requested — inside the DataLoader workers of the trainer
(``train.num_workers``) and of evaluation (``eval.num_workers`` / ``evaluate --workers``).

:class:`FileDataset` implements the :class:`endist_vision.data.base.Dataset` protocol (``len``, ``y``, ``name``,
``get(idx, augment, seeds)``, ``subset``, ``unlabeled``, ``concat``, ``input_shape``; also ``raw``); files are
listed and decoded by :mod:`.decode`, the one image decoding path of the package. Without an
augmentation, images go through the ImageNet eval transform (:class:`.transforms.ImageNetEval`); an
augmentation with ``on_pil = True`` (``data.augment=imagenet``) receives the decoded PIL images, any other
augmentation (e.g. ``cifar``) receives the eval-transformed uint8 batch.

File names are stored as one fixed-width ``numpy`` bytes array (no per-file Python objects), so forked
workers do not copy the list through reference counting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

from ..errors import DatasetError
from .decode import extensions_text, list_images, open_rgb
from .transforms import ImageNetEval, to_float_batch

__all__ = ["FileDataset", "scan_class_folders"]


def scan_class_folders(root: Path, flag: str, what: str) -> tuple[list[str], list[str], np.ndarray]:
    """ImageFolder layout ``root/<class>/<image>``: (sorted class names, relative file paths, label per
    file = index of its class in the sorted names). A missing/empty root or a class folder without
    images is a :class:`DatasetError` naming ``flag`` and the path."""
    if not root.is_dir():
        raise DatasetError(f"{flag}: missing directory {root} ({what})")
    with os.scandir(root) as it:
        classes = sorted(e.name for e in it if e.is_dir())
    if not classes:
        raise DatasetError(f"{flag}: {root} has no class sub-folders ({what}: expected {root}/<class>/<image files>)")
    files: list[str] = []
    labels: list[np.ndarray] = []
    for c, name in enumerate(classes):
        imgs = list_images(root / name)
        if not imgs:
            raise DatasetError(f"{flag}: class folder {root / name} has no image files ({extensions_text()}) ({what})")
        files += [f"{name}/{f}" for f in imgs]
        labels.append(np.full(len(imgs), c, dtype=np.int64))
    return classes, files, np.concatenate(labels)


class FileDataset:
    """Images read from ``root/<files[i]>`` on demand; labels ``y`` (int64, ``-1`` = unlabeled)."""

    def __init__(self, root: str | Path, files: np.ndarray | list[str], y: torch.Tensor | np.ndarray, name: str,
                 image_size: int, flag: str = "data.root") -> None:
        self.root = str(root)
        self.files = files if isinstance(files, np.ndarray) else np.array([os.fsencode(f) for f in files], dtype=np.bytes_)
        self.y = torch.as_tensor(np.asarray(y, dtype=np.int64))
        if len(self.files) != len(self.y):
            raise ValueError(f"{name}: {len(self.files)} files but {len(self.y)} labels")
        self.name, self.image_size, self.flag = name, int(image_size), flag
        self._eval: Optional[ImageNetEval] = None

    def __len__(self) -> int:
        return len(self.y)

    def __getstate__(self) -> dict[str, Any]:  # the torchvision transform is rebuilt lazily in each process
        return {**self.__dict__, "_eval": None}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    @property
    def eval_transform(self) -> ImageNetEval:
        if self._eval is None:
            self._eval = ImageNetEval(self.image_size)
        return self._eval

    def path(self, i: int) -> str:
        """Full path of image ``i``."""
        return os.path.join(self.root, os.fsdecode(self.files[int(i)]))

    def open(self, i: int) -> Image.Image:
        """Decode image ``i`` as RGB (:class:`DatasetError` naming the file if it cannot be read)."""
        return open_rgb(self.path(i), self.flag)

    def raw(self, idx: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 ``[B, size, size, 3]`` after the eval transform."""
        return np.stack([self.eval_transform(self.open(i)) for i in np.asarray(idx, dtype=np.int64)])

    def get(self, idx: np.ndarray | torch.Tensor, augment: Optional[Callable[..., Any]] = None,
            seeds: Optional[np.ndarray] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 ``[B, 3, size, size]`` in [0, 1] and labels; see the module docstring for ``augment``."""
        idx_np = np.asarray(idx, dtype=np.int64)
        y = self.y[torch.as_tensor(idx_np)]
        if augment is not None and getattr(augment, "on_pil", False):
            return augment([self.open(i) for i in idx_np], seeds), y
        xb = self.raw(idx_np)
        if augment is not None:
            xb = augment(xb, seeds)
        return to_float_batch(np.asarray(xb)), y

    def subset(self, idx: np.ndarray, name: str | None = None) -> "FileDataset":
        idx = np.asarray(idx, dtype=np.int64)
        return FileDataset(self.root, self.files[idx], self.y[torch.as_tensor(idx)], name or self.name, self.image_size, self.flag)

    def unlabeled(self, name: str | None = None) -> "FileDataset":
        return FileDataset(self.root, self.files, self.y.new_full(self.y.shape, -1), name or self.name, self.image_size, self.flag)

    def with_labels(self, y: torch.Tensor | np.ndarray, name: str | None = None) -> "FileDataset":
        """The same files with new labels (e.g. mapped to another class index)."""
        return FileDataset(self.root, self.files, y, name or self.name, self.image_size, self.flag)

    def concat(self, other: Any, name: str) -> "FileDataset":
        """Both sets' files (absolute paths when the roots differ)."""
        if not isinstance(other, FileDataset) or other.image_size != self.image_size:
            raise DatasetError(f"cannot concatenate {self.name} and {getattr(other, 'name', other)}: different storage or image size")
        if other.root == self.root:
            files, root = np.concatenate([self.files, other.files]), self.root
        else:
            files = np.array([os.fsencode(a.path(i)) for a in (self, other) for i in range(len(a))], dtype=np.bytes_)
            root = ""
        return FileDataset(root, files, torch.cat([self.y, other.y]), name, self.image_size, self.flag)
