"""Dataset containers and the dataset registry.

All inputs are raw: images in [0, 1] (stored as float32 NCHW for the small embedded sets, or uint8 NHWC
for image folders to save memory; converted per batch), spiral points as float32 ``[N, 2]``.
Large sets (ImageNet) are :class:`endist_vision.data.files.FileDataset`s instead: the same interface
(``len``, ``y``, ``name``, ``get``, ``raw``, ``subset``, ``unlabeled``, ``input_shape``), decoded per batch.
Labels are int64; ``-1`` marks unlabeled inputs (AUX / OOD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..errors import DatasetError
from .transforms import to_float_batch


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


def concat(a: Any, b: Any, name: str) -> Any:
    """Concatenate two data sets of the same storage kind (two ``ArrayDataset``s or two ``FileDataset``s)."""
    if hasattr(a, "concat"):
        return a.concat(b, name)
    if not isinstance(b, ArrayDataset) or a.is_uint8_image != b.is_uint8_image:
        raise DatasetError(f"cannot concatenate {a.name} and {b.name}: different storage")
    x = np.concatenate([a.x, b.x]) if a.is_uint8_image else torch.cat([a.x, b.x])
    return ArrayDataset(x, torch.cat([a.y, b.y]), name)


@dataclass
class Source:
    """What a dataset loader returns. ``train`` may be None for evaluation-only (OOD) sets."""

    test: ArrayDataset
    train: Optional[ArrayDataset] = None
    num_classes: int = 0
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)
    in_channels: int = 3
    input_kind: str = "image"  # "image" | "points"
    image_size: Optional[int] = None
    classes: Optional[list[str]] = None  # class names (ImageNet wnids) in label order, when known


@dataclass
class DataBundle:
    """Everything the trainer/evaluator needs; splits are fixed by ``data.split_seed``."""

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    num_classes: int
    mean: Sequence[float]
    std: Sequence[float]
    in_channels: int
    input_kind: str
    aux: Optional[ArrayDataset] = None
    ood: dict[str, ArrayDataset] = field(default_factory=dict)
    image_size: Optional[int] = None
    classes: Optional[list[str]] = None  # class names (e.g. ImageNet wnids) in label order; shift sets map by name


Loader = Callable[..., Source]
_DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register ``loader(root: str | None, *, flag: str, image_size: int | None) -> Source``."""

    def deco(fn: Loader) -> Loader:
        _DATASETS[name] = fn
        return fn

    return deco


def available_datasets() -> list[str]:
    return sorted(_DATASETS)


def get_loader(name: str, flag: str) -> Loader:
    if name not in _DATASETS:
        raise DatasetError(f"{flag}: unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return _DATASETS[name]


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
