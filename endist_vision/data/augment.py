"""Augmentation. ``cifar``: albumentations ([EnD2] App. A): shift by up to ±4 px (4-px zero padding then a
random crop), random horizontal flip, rotation by up to ±15°. Deterministic per batch: the pipeline is
re-seeded per sample (seed from run seed, epoch and sample index), so a resumed run reproduces the same augmented batches.
``imagenet``: torchvision RandomResizedCrop + flip, seeded the same way (:mod:`.transforms`)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError


def cifar_augment(image_size: int, pad: int = 4, rotate: float = 15.0, flip: bool = True) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Returns ``augment(batch uint8 [B, H, W, C], seeds [B]) -> uint8 [B, H, W, C]``."""
    import albumentations as A
    import cv2

    ts = [
        A.PadIfNeeded(image_size + 2 * pad, image_size + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=0),
        A.RandomCrop(image_size, image_size),
    ]
    if flip:
        ts.append(A.HorizontalFlip(p=0.5))
    if rotate > 0:
        ts.append(A.Rotate(limit=(-rotate, rotate), border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0))
    tf = A.Compose(ts)

    def augment(batch: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        out = []
        for img, s in zip(batch, seeds):
            tf.set_random_seed(int(s) % (2**31 - 1))  # per-sample seed: independent of batching/DDP
            out.append(tf(image=img)["image"])
        return np.stack(out)

    return augment


def shift_augment(max_shift: int = 1) -> Callable[[torch.Tensor, np.ndarray], torch.Tensor]:
    """For small float images (8×8 digits): random translation by up to ``max_shift`` px (zero fill)."""

    def augment(batch: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        shifts = torch.tensor(
            np.stack([np.random.default_rng(int(s)).integers(-max_shift, max_shift + 1, 2) for s in seeds])
        )
        pad = torch.nn.functional.pad(batch, (max_shift,) * 4)
        h, w = batch.shape[-2:]
        out = torch.stack([pad[i, :, max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w] for i, (dy, dx) in enumerate(shifts.tolist())])
        return out

    return augment


def build_augment(kind: str, image_size: int | None) -> Callable | None:
    """``none`` | ``cifar`` (albumentations pad-crop/flip/rotate) | ``shift`` (small images) |
    ``imagenet`` (torchvision RandomResizedCrop(image_size) + flip, :mod:`.transforms`)."""
    if kind in (None, "none"):
        return None
    if kind == "imagenet":
        from .transforms import ImageNetTrainAugment

        return ImageNetTrainAugment(int(image_size or 224))
    if kind == "cifar":
        return cifar_augment(int(image_size or 32))
    if kind == "shift":
        return shift_augment(1)
    raise ConfigError(f"data.augment must be one of none|cifar|shift|imagenet, got {kind!r}")
