"""The one image-file decoding path of :mod:`endist_vision.data`: which file names are images
(:data:`IMAGE_EXTENSIONS`), how folders of them are listed, and how one file is decoded with PIL.

Used by the in-memory loaders (:mod:`.images`: TinyImageNet, ``imagefolder``), which decode everything up
front, and by the lazily decoded :class:`.files.FileDataset` (ImageNet scale), which decodes per batch.
Every decoding failure is a :class:`~endist_vision.errors.DatasetError` naming the flag and the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..errors import DatasetError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"})


def extensions_text() -> str:
    """The accepted extensions, for error messages (``.bmp, .jpeg, ...``)."""
    return ", ".join(sorted(IMAGE_EXTENSIONS))


def is_image(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fspath(name))[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: Path, recursive: bool = False) -> list[str]:
    """Sorted image file names in ``folder`` (paths relative to it; recursively if asked)."""
    if not recursive:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if e.is_file() and is_image(e.name))
    out = []
    for d, dirs, files in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(d, folder)
        out += [os.path.normpath(os.path.join(rel, f)) for f in sorted(files) if is_image(f)]
    return out


def open_rgb(path: str | os.PathLike[str], flag: str) -> Image.Image:
    """Decode one image file as an RGB PIL image (:class:`DatasetError` naming ``flag`` and the file)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001 - any decoding failure is a malformed data set
        raise DatasetError(f"{flag}: cannot read image {path}: {type(e).__name__}: {e}") from e


def read_images(paths: Iterable[str | os.PathLike[str]], size: int | None, flag: str) -> np.ndarray:
    """uint8 ``[N, H, W, 3]``: every file decoded as RGB and, if ``size`` is given, resized (bilinear) to
    ``size × size``; without ``size`` all images must already share one size."""
    out = []
    for f in paths:
        im = open_rgb(f, flag)
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        out.append(np.asarray(im, dtype=np.uint8))
    if not out:
        raise DatasetError(f"{flag}: no image files to read")
    if len({a.shape for a in out}) > 1:
        raise DatasetError(f"{flag}: images of different sizes (first {out[0].shape[:2]}); set data.image_size to resize them")
    return np.stack(out)
