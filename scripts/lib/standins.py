"""Stand-in data sets in the *real* on-disk layouts, made from scikit-learn's embedded 8×8 digits, so that
smoke runs and tests exercise the real loaders (ImageNet, ImageNet-A/R/C/O, CIFAR-10/100 and their -C
versions, MNIST) without the real data. Classes are the 10 digits; fake wnids ``n00000000`` … ``n00000009``.
The digits' fixed train/test split (:func:`endist_vision.data.embedded._digits_split`) gives the training
images (ImageNet train, CIFAR train batches, MNIST train) and the test images (everything else).
Test and recipe tooling, not part of the installed package:

    python scripts/lib/standins.py OUT [--only NAME ...] [--per-class N]

writes (``--only`` picks a subset of the names in brackets)::

    OUT/imagenet/{train,val}/<wnid>/*.JPEG                     [imagenet]   RGB, sizes 32–55 px, varying aspect
    OUT/imagenet-a/<wnid>/*.jpg                                [imagenet-a] 6 of the 10 wnids (A_WNIDS), zoomed crops
    OUT/imagenet-r/<wnid>/*.jpg                                [imagenet-r] 6 wnids (R_WNIDS), inverted + tinted "renditions"
    OUT/imagenet-c/<corruption>/<1..5>/<wnid>/*.JPEG           [imagenet-c] gaussian_noise, contrast × severities 1–5
    OUT/imagenet-o/<wnid>/*.JPEG                               [imagenet-o] pixel-shuffled digits, 2 unseen wnids
    OUT/cifar-10-batches-py/{data_batch_1..5,test_batch}       [cifar10]    digits upsampled ×4 to 32×32×3, pickled as
                                                                            Python 2's cPickle wrote the real files
    OUT/cifar-100-python/{train,test}                          [cifar100]   same images (labels 0–9 of 100 classes)
    OUT/cifar-10-c/{gaussian_noise,contrast}.npy, labels.npy   [cifar10-c]  [5·n, 32, 32, 3] uint8, severity blocks of n
    OUT/cifar-100-c/...                                        [cifar100-c] same
    OUT/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz  [mnist]      digits upsampled ×3 and padded to 28×28

``--per-class N`` keeps at most N images per class and split (fast tests); the CIFAR-C sets then have
n = 10·N images per severity.
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import struct
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from endist_vision.data.embedded import _digits, _digits_split

WNIDS = [f"n{c:08d}" for c in range(10)]
A_WNIDS = [WNIDS[c] for c in (0, 2, 3, 5, 7, 9)]
R_WNIDS = [WNIDS[c] for c in (1, 2, 4, 6, 8, 9)]
O_WNIDS = ["n00000100", "n00000101"]
CORRUPTIONS = ("gaussian_noise", "contrast")
NAMES = ("imagenet", "imagenet-a", "imagenet-r", "imagenet-c", "imagenet-o", "cifar10", "cifar100", "cifar10-c", "cifar100-c", "mnist")


# ---------------------------------------------------------------- source images
def digits_split(per_class: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images uint8 [N, 8, 8] in 0..255, labels), "test": (...)}`` (at most ``per_class`` per class)."""
    x, y = _digits()
    imgs = np.clip(np.rint(x[:, 0].numpy() * 255), 0, 255).astype(np.uint8)
    out = {}
    for name, idx in zip(("train", "test"), _digits_split()):
        if per_class is not None:
            idx = np.concatenate([idx[y.numpy()[idx] == c][:per_class] for c in range(10)])
            idx.sort()
        out[name] = (imgs[idx], y.numpy()[idx].astype(np.int64))
    return out


def upsample(imgs: np.ndarray, factor: int, pad: int = 0) -> np.ndarray:
    """Nearest-neighbour ``factor``× upsampling of ``[N, h, w]`` plus ``pad`` zero pixels per side."""
    up = np.kron(imgs, np.ones((1, factor, factor), dtype=np.uint8))
    return np.pad(up, ((0, 0), (pad, pad), (pad, pad))) if pad else up


def to_rgb(img: np.ndarray, i: int) -> Image.Image:
    """An 8×8 grey digit as an RGB PIL image of a varying size (32–55 × 32–51 px, bilinear)."""
    w, h = 32 + (7 * i) % 24, 32 + (5 * i) % 20
    return Image.fromarray(img).convert("RGB").resize((w, h), Image.BILINEAR)


def gaussian_noise(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Hendrycks-style Gaussian noise, σ ∈ {.04, .06, .08, .09, .10} of the [0, 1] range."""
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    noisy = x / 255.0 + np.random.default_rng(seed).normal(0.0, sigma, x.shape)
    return np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)


def contrast(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Hendrycks-style contrast reduction, c ∈ {.4, .3, .2, .1, .05}: (x − mean)·c + mean per image."""
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    xf = x.astype(np.float64)
    axes = tuple(range(1, x.ndim)) if x.ndim > 3 else None
    mean = xf.mean(axis=axes, keepdims=True) if axes else xf.mean()
    return np.clip(np.rint((xf - mean) * c + mean), 0, 255).astype(np.uint8)


CORRUPT: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {"gaussian_noise": gaussian_noise, "contrast": contrast}


# ---------------------------------------------------------------- writers
def _write_jpegs(root: Path, images: Sequence[Image.Image], wnids: Sequence[str], ext: str) -> None:
    for i, (im, w) in enumerate(zip(images, wnids)):
        d = root / w
        d.mkdir(parents=True, exist_ok=True)
        im.save(d / f"{w}_{i:05d}{ext}", quality=95)


def write_imagenet(out: Path, per_class: int | None = None) -> Path:
    """``out/{train,val}/<wnid>/*.JPEG`` (10 wnids)."""
    src = digits_split(per_class)
    for split, key in (("train", "train"), ("val", "test")):
        x, y = src[key]
        _write_jpegs(out / split, [to_rgb(im, i) for i, im in enumerate(x)], [WNIDS[c] for c in y], ".JPEG")
    return out


def write_imagenet_a(out: Path, per_class: int | None = None) -> Path:
    """``out/<wnid>/*.jpg`` for the 6 wnids of :data:`A_WNIDS`: centre-zoomed test digits."""
    x, y = digits_split(per_class)["test"]
    keep = np.isin(np.array(WNIDS)[y], A_WNIDS)
    ims = [to_rgb(np.kron(im[1:7, 1:7], np.ones((2, 2), np.uint8)), i) for i, im in enumerate(x[keep])]
    _write_jpegs(out, ims, [WNIDS[c] for c in y[keep]], ".jpg")
    return out


def write_imagenet_r(out: Path, per_class: int | None = None) -> Path:
    """``out/<wnid>/*.jpg`` for :data:`R_WNIDS`: inverted, colour-tinted test digits."""
    x, y = digits_split(per_class)["test"]
    keep = np.isin(np.array(WNIDS)[y], R_WNIDS)
    ims = []
    for i, im in enumerate(x[keep]):
        rgb = np.stack([255 - im, (255 - im) // 2, im // 2], -1).astype(np.uint8)
        ims.append(Image.fromarray(rgb).resize((36 + (3 * i) % 16, 40), Image.BILINEAR))
    _write_jpegs(out, ims, [WNIDS[c] for c in y[keep]], ".jpg")
    return out


def write_imagenet_c(out: Path, per_class: int | None = None, severities: Sequence[int] = (1, 2, 3, 4, 5)) -> Path:
    """``out/<corruption>/<severity>/<wnid>/*.JPEG``: corrupted test digits (all 10 wnids)."""
    x, y = digits_split(per_class)["test"]
    base = np.stack([np.asarray(to_rgb(im, 0)) for im in x])  # one size: the corruption acts on the whole batch
    for c in CORRUPTIONS:
        for s in severities:
            xc = CORRUPT[c](base, s, seed=100 * s + len(c))
            _write_jpegs(out / c / str(s), [Image.fromarray(im) for im in xc], [WNIDS[k] for k in y], ".JPEG")
    return out


def write_imagenet_o(out: Path, per_class: int | None = None) -> Path:
    """``out/<wnid>/*.JPEG``: pixel-shuffled test digits under 2 wnids not among the training classes."""
    x, _ = digits_split(per_class)["test"]
    rng = np.random.default_rng(5)
    shuffled = [rng.permutation(im.reshape(-1)).reshape(8, 8) for im in x[: max(4, len(x) // 4)]]
    _write_jpegs(out, [to_rgb(im, i) for i, im in enumerate(shuffled)], [O_WNIDS[i % 2] for i in range(len(shuffled))], ".JPEG")
    return out


def cifar_images(x: np.ndarray) -> np.ndarray:
    """8×8 digits → uint8 ``[N, 32, 32, 3]`` (×4 nearest upsampling, grey in all channels)."""
    return np.repeat(upsample(x, 4)[..., None], 3, axis=-1)


class Py2CPickler(pickle._Pickler):
    """Pickles like Python 2's ``cPickle`` (protocol 2) wrote the real CIFAR batches: every ``str`` and ``bytes``
    as a Python 2 ``str`` (``SHORT_BINSTRING`` / ``BINSTRING``, read back as ``bytes`` with
    ``encoding="bytes"``) and numpy arrays through ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
    ``numpy.dtype``, the only globals of a real file."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: str | bytes) -> None:
        b = obj.encode("latin-1") if isinstance(obj, str) else obj
        head = pickle.SHORT_BINSTRING + bytes([len(b)]) if len(b) < 256 else pickle.BINSTRING + struct.pack("<i", len(b))
        self.write(head + b)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if getattr(obj, "__name__", None) == "_reconstruct":  # numpy 2 names it numpy._core.multiarray
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_cpickle(obj: Any) -> bytes:
    """``obj`` pickled by :class:`Py2CPickler`."""
    buf = io.BytesIO()
    Py2CPickler(buf, 2).dump(obj)
    return buf.getvalue()


def write_cifar(out: Path, per_class: int | None = None, hundred: bool = False) -> Path:
    """CIFAR python-pickle folder: ``data_batch_1..5`` + ``test_batch`` (CIFAR-10: ``labels``) or ``train`` +
    ``test`` (CIFAR-100: ``fine_labels``, ``coarse_labels`` = fine // 20); rows are CHW-flattened uint8 and
    the dicts hold the keys of the real files (``batch_label``, ``filenames``), pickled by :func:`py2_cpickle`."""
    src = digits_split(per_class)
    out.mkdir(parents=True, exist_ok=True)

    def dump(name: str, x: np.ndarray, y: np.ndarray) -> None:
        labels = [int(v) for v in y]
        d: dict[bytes, Any] = {b"batch_label": f"{name} (digits stand-in)", b"data": cifar_images(x).transpose(0, 3, 1, 2).reshape(len(x), -1),
                               b"filenames": [f"digit_{i:05d}.png" for i in range(len(x))]}
        if hundred:
            d.update({b"fine_labels": labels, b"coarse_labels": [v // 20 for v in labels]})
        else:
            d[b"labels"] = labels
        (out / name).write_bytes(py2_cpickle(d))

    xtr, ytr = src["train"]
    if hundred:
        dump("train", xtr, ytr)
    else:
        for b, idx in enumerate(np.array_split(np.arange(len(ytr)), 5), start=1):
            dump(f"data_batch_{b}", xtr[idx], ytr[idx])
    dump("test" if hundred else "test_batch", *src["test"])
    return out


def write_cifar_c(out: Path, per_class: int | None = None) -> Path:
    """``out/<corruption>.npy`` uint8 ``[5·n, 32, 32, 3]`` (severity s = rows (s−1)·n … s·n − 1) and
    ``out/labels.npy`` (the n test labels repeated 5 times)."""
    x, y = digits_split(per_class)["test"]
    base = cifar_images(x)
    out.mkdir(parents=True, exist_ok=True)
    for c in CORRUPTIONS:
        np.save(out / f"{c}.npy", np.concatenate([CORRUPT[c](base, s, seed=10 * s + len(c)) for s in range(1, 6)]))
    np.save(out / "labels.npy", np.tile(y, 5).astype(np.uint8))
    return out


def _idx(path: Path, arr: np.ndarray, compress: bool) -> None:
    header = struct.pack(">I", 2051 if arr.ndim == 3 else 2049) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(out: Path, per_class: int | None = None, raw_layout: bool = False) -> Path:
    """MNIST IDX files of 28×28 digits (×3 upsampled, 2-px padded): ``out/*-ubyte.gz`` or, with
    ``raw_layout``, uncompressed in ``out/MNIST/raw/`` (torchvision's layout)."""
    src = digits_split(per_class)
    d = out / "MNIST" / "raw" if raw_layout else out
    d.mkdir(parents=True, exist_ok=True)
    for split, key in (("train", "train"), ("t10k", "test")):
        x, y = src[key]
        _idx(d / f"{split}-images-idx3-ubyte", upsample(x, 3, pad=2), not raw_layout)
        _idx(d / f"{split}-labels-idx1-ubyte", y.astype(np.uint8), not raw_layout)
    return out


WRITERS: dict[str, tuple[str, Callable[..., Path]]] = {
    "imagenet": ("imagenet", write_imagenet), "imagenet-a": ("imagenet-a", write_imagenet_a), "imagenet-r": ("imagenet-r", write_imagenet_r),
    "imagenet-c": ("imagenet-c", write_imagenet_c), "imagenet-o": ("imagenet-o", write_imagenet_o),
    "cifar10": ("cifar-10-batches-py", write_cifar), "cifar100": ("cifar-100-python", lambda o, n=None: write_cifar(o, n, hundred=True)),
    "cifar10-c": ("cifar-10-c", write_cifar_c), "cifar100-c": ("cifar-100-c", write_cifar_c), "mnist": ("mnist", write_mnist),
}


def write_standins(out: str | Path, only: Sequence[str] | None = None, per_class: int | None = None) -> dict[str, Path]:
    """Write the stand-ins ``only`` (default: all of :data:`NAMES`) under ``out``; returns name → folder."""
    out = Path(out)
    res = {}
    for name in only or NAMES:
        if name not in WRITERS:
            raise ValueError(f"unknown stand-in {name!r}; choose from {', '.join(NAMES)}")
        sub, fn = WRITERS[name]
        res[name] = fn(out / sub, per_class)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/lib/standins.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder (sub-folders per data set)")
    p.add_argument("--only", nargs="+", choices=NAMES, help="write only these stand-ins")
    p.add_argument("--per-class", type=int, default=None, help="at most N images per class and split")
    a = p.parse_args(argv)
    for name, path in write_standins(a.out, a.only, a.per_class).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
