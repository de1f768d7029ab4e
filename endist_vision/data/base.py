"""The :class:`Dataset` protocol, the in-memory :class:`ArrayDataset`, what loaders return (:class:`Source`)
and hand to the trainer (:class:`DataBundle`), and the data-set registry.

Every split the trainer and evaluation see is a :class:`Dataset`: either an :class:`ArrayDataset` (decoded up
front: float32 NCHW in [0, 1] for the small embedded sets, uint8 NHWC for image folders, converted per
batch; spiral points float32 ``[N, 2]``) or a :class:`endist_vision.data.files.FileDataset` (ImageNet scale:
file names only, decoded per batch). Labels are int64; ``-1`` marks unlabeled inputs (AUX / OOD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..errors import DatasetError
from ..registry import Registry
from .transforms import to_float_batch


Augment = Callable[..., Any]
"""``augment(batch, per-sample seeds)``; with ``augment.on_pil = True`` it receives PIL images instead."""


@runtime_checkable
class Dataset(Protocol):
    """What the trainer, evaluation and the shift sets use of a data split, whatever its storage."""

    name: str
    y: torch.Tensor  # int64 labels [N]; -1 = unlabeled

    def __len__(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input as returned by :meth:`get` (``(C, H, W)`` for images)."""
        ...

    def get(self, idx: np.ndarray | torch.Tensor, augment: Optional[Augment] = None,
            seeds: Optional[np.ndarray] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 inputs (images in [0, 1]) and labels of the items ``idx``, augmented if asked."""
        ...

    def subset(self, idx: np.ndarray, name: str | None = None) -> "Dataset":
        """The items ``idx`` (same storage)."""
        ...

    def unlabeled(self, name: str | None = None) -> "Dataset":
        """The same inputs with every label ``-1`` (AUX / OOD use)."""
        ...

    def concat(self, other: "Dataset", name: str) -> "Dataset":
        """Both sets' items (same storage kind, else :class:`DatasetError`)."""
        ...


@dataclass
class ArrayDataset:
    """In-memory inputs ``x`` and labels ``y``. ``x`` is a float tensor (already in [0, 1]) or a uint8
    ``numpy`` array ``[N, H, W, C]`` (converted to float NCHW / 255 by :meth:`get`)."""

    x: torch.Tensor | np.ndarray
    y: torch.Tensor
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{self.name}: {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def is_uint8_image(self) -> bool:
        return isinstance(self.x, np.ndarray) and self.x.dtype == np.uint8

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input as returned by :meth:`get` (``(C, H, W)`` for images)."""
        shape = tuple(int(d) for d in self.x.shape[1:])
        return (shape[2], shape[0], shape[1]) if self.is_uint8_image else shape

    def unlabeled(self, name: str | None = None) -> "ArrayDataset":
        """The same inputs with every label set to ``-1`` (AUX / OOD use)."""
        return ArrayDataset(self.x, self.y.new_full(self.y.shape, -1), name or self.name)

    def raw(self, idx: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        idx = np.asarray(idx) if self.is_uint8_image else torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return self.x[idx]

    def get(
        self, idx: np.ndarray | torch.Tensor, augment: Optional[Callable[..., Any]] = None, seeds: Optional[np.ndarray] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (float32, [0, 1]) and labels for ``idx``; ``augment(batch, per-sample seeds)`` if given."""
        idx_np = np.asarray(idx, dtype=np.int64)
        y = self.y[torch.as_tensor(idx_np)]
        if self.is_uint8_image:
            xb = self.x[idx_np]
            if augment is not None and getattr(augment, "on_pil", False):  # e.g. the ImageNet crop/flip
                from PIL import Image

                return augment([Image.fromarray(np.ascontiguousarray(im).squeeze(-1) if im.shape[-1] == 1 else np.ascontiguousarray(im))
                                for im in xb], seeds), y
            if augment is not None:
                xb = augment(xb, seeds)
            x = to_float_batch(np.asarray(xb))
        else:
            x = self.x[torch.as_tensor(idx_np)]
            if augment is not None and getattr(augment, "on_pil", False):
                raise DatasetError(f"{self.name}: this augmentation needs images (uint8 arrays or image files), not float tensors")
            if augment is not None:
                x = augment(x, seeds)
        return x, y

    def subset(self, idx: np.ndarray, name: str | None = None) -> "ArrayDataset":
        idx = np.asarray(idx, dtype=np.int64)
        x = self.x[idx] if self.is_uint8_image else self.x[torch.as_tensor(idx)]
        return ArrayDataset(x, self.y[torch.as_tensor(idx)], name or self.name)

    def concat(self, other: Dataset, name: str) -> "ArrayDataset":
        """Both sets' inputs; ``other`` must be an ``ArrayDataset`` of the same storage (uint8 or float)."""
        if not isinstance(other, ArrayDataset) or self.is_uint8_image != other.is_uint8_image:
            raise DatasetError(f"cannot concatenate {self.name} and {getattr(other, 'name', other)}: different storage")
        x = np.concatenate([self.x, other.x]) if self.is_uint8_image else torch.cat([self.x, other.x])
        return ArrayDataset(x, torch.cat([self.y, other.y]), name)


def concat(a: Dataset, b: Dataset, name: str) -> Dataset:
    """Concatenate two data sets of the same storage kind (two ``ArrayDataset``s or two ``FileDataset``s)."""
    return a.concat(b, name)


@dataclass
class Source:
    """What a dataset loader returns. ``train`` may be None for evaluation-only (OOD) sets."""

    test: Dataset
    train: Optional[Dataset] = None
    num_classes: int = 0
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)
    in_channels: int = 3
    input_kind: str = "image"  # "image" | "points"
    image_size: Optional[int] = None
    classes: Optional[list[str]] = None  # class names (ImageNet wnids) in label order, when known
    val_split: str = "random"  # the paper's validation split of this set (data.val_split=auto): random|last|last_per_class


@dataclass
class DataBundle:
    """Everything the trainer/evaluator needs; splits are fixed by ``data.split_seed``."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    mean: Sequence[float]
    std: Sequence[float]
    in_channels: int
    input_kind: str
    aux: Optional[Dataset] = None
    ood: dict[str, Dataset] = field(default_factory=dict)
    image_size: Optional[int] = None
    classes: Optional[list[str]] = None  # class names (e.g. ImageNet wnids) in label order; shift sets map by name


Loader = Callable[..., Source]
DATASETS: Registry[Loader] = Registry("data set")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register ``loader(root: str | None, *, flag: str, image_size: int | None) -> Source`` under ``name``
    (a name taken by another loader raises ``ValueError``)."""
    return DATASETS.register(name)


def available_datasets() -> list[str]:
    return DATASETS.names()


def get_loader(name: str, flag: str) -> Loader:
    """The loader registered as ``name`` (:class:`DatasetError` naming ``flag`` and the known names)."""
    if name not in DATASETS:
        raise DatasetError(f"{flag}: unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return DATASETS.get(name)


def require_dir(root: str | None, flag: str, what: str) -> Path:
    """``root`` as an existing directory, else a :class:`DatasetError` naming ``flag`` and the path."""
    if not root:
        raise DatasetError(f"{flag} is required for {what} (a local directory; nothing is downloaded)")
    p = Path(root).expanduser()
    if not p.exists():
        raise DatasetError(f"{flag}={root}: directory does not exist ({what})")
    if not p.is_dir():
        raise DatasetError(f"{flag}={root}: not a directory ({what})")
    return p


def require_file(p: Path, flag: str, what: str) -> Path:
    if not p.is_file():
        raise DatasetError(f"{flag}: missing file {p} ({what})")
    return p
