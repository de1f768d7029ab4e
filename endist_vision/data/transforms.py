"""Standard ImageNet preprocessing with torchvision on PIL images.

* eval: ``Resize(round(size · 256/224))`` (shorter side, bilinear, antialiased) then ``CenterCrop(size)``
  (224 → Resize(256) + CenterCrop(224), the usual protocol);
* train: ``RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))`` + horizontal flip with p = 0.5,
  the crop/flip parameters drawn by torchvision from the global torch RNG *inside* a
  ``torch.random.fork_rng`` seeded with the per-sample seed the trainer passes, so the augmentation is a
  function of (run seed, epoch, sample) only — independent of workers and batching (exact resume) — and
  the caller's RNG stream (dropout) is left untouched.

Both return uint8 images; :func:`to_float_batch` stacks them into float32 ``[B, C, H, W]`` in [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

EVAL_RESIZE_RATIO = 256 / 224


def eval_resize_size(size: int) -> int:
    """Shorter-side size before the center crop: ``round(size · 256/224)`` (256 for 224)."""
    return int(round(size * EVAL_RESIZE_RATIO))


def to_float_batch(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """uint8 images of one size → float32 ``[B, C, H, W]`` in [0, 1]: a stacked ``[B, H, W, C]`` array (used as
    is), or a sequence of ``[H, W, C]`` / ``[H, W]`` images."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        arr = images
    else:
        arr = np.stack([im if im.ndim == 3 else im[:, :, None] for im in images])
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)


class ImageNetEval:
    """``Resize(round(size·256/224))`` + ``CenterCrop(size)`` → uint8 ``[size, size, C]``."""

    def __init__(self, size: int) -> None:
        from torchvision import transforms as T

        self.size = int(size)
        self.tf = T.Compose([T.Resize(eval_resize_size(self.size), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                             T.CenterCrop(self.size)])

    def __call__(self, img: Image.Image) -> np.ndarray:
        return np.asarray(self.tf(img), dtype=np.uint8)


class ImageNetTrainAugment:
    """``RandomResizedCrop(size)`` + ``RandomHorizontalFlip`` per sample, seeded per sample.

    Called by the data sets with PIL images (``on_pil = True``):
    ``augment(images: list[PIL.Image], seeds [B]) -> float32 [B, C, size, size]``.
    """

    on_pil = True

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        self.size, self.scale, self.ratio = int(size), scale, ratio

    def one(self, img: Image.Image, seed: int) -> np.ndarray:
        """The augmented uint8 image for one sample and its seed."""
        from torchvision import transforms as T
        from torchvision.transforms import functional as TF

        # CPU generator only: torch.manual_seed would also reseed every CUDA device (dropout on the GPU),
        # and fork_rng(devices=[]) restores only the CPU state
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            i, j, h, w = T.RandomResizedCrop.get_params(img, list(self.scale), list(self.ratio))
            flip = bool(torch.rand(()) < 0.5)
        out = TF.resized_crop(img, i, j, h, w, [self.size, self.size], interpolation=T.InterpolationMode.BILINEAR, antialias=True)
        if flip:
            out = TF.hflip(out)
        return np.asarray(out, dtype=np.uint8)

    def __call__(self, images: Sequence[Image.Image], seeds: np.ndarray | None) -> torch.Tensor:
        if seeds is None or len(seeds) != len(images):
            raise ValueError("ImageNetTrainAugment needs one seed per image")
        return to_float_batch([self.one(im, int(s)) for im, s in zip(images, seeds)])
