"""Embedded data sets (no download): scikit-learn's 8×8 digits with OOD variants, and the 3-spiral data
set of [EnD2] §4 (Fig. 2) with its "AUX" thick ring far from the data."""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import ArrayDataset, Source, register_dataset

# ---------------------------------------------------------------- spirals ([EnD2] §4, Fig. 2)
SPIRAL_MAX_RADIUS = 1.0
AUX_RING = (1.5, 2.2)  # inner/outer radius of the AUX ring (Fig. 2b): far from all training data


def make_spirals(n_per_class: int, seed: int, num_classes: int = 3, noise: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Three spiral arms from the centre; arm c at angle 2πc/K + 1.5π·t, radius t ∈ U(0, 1).

    Noise grows with the radius (σ(t) = noise·(0.2 + t)), and the distance between arms grows with the
    radius too, so the outer parts of the arms overlap (data uncertainty), as in [EnD2] Fig. 2a.
    """
    g = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(num_classes):
        t = g.uniform(0.0, 1.0, n_per_class)
        theta = 2 * math.pi * c / num_classes + 1.5 * math.pi * t
        r = SPIRAL_MAX_RADIUS * t
        pts = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
        pts += g.normal(size=pts.shape) * (noise * (0.2 + t))[:, None]
        xs.append(pts)
        ys.append(np.full(n_per_class, c))
    x = torch.tensor(np.concatenate(xs), dtype=torch.float32)
    y = torch.tensor(np.concatenate(ys), dtype=torch.long)
    return x, y


def make_ring(n: int, seed: int, radii: tuple[float, float] = AUX_RING) -> torch.Tensor:
    """Points uniform (in area) on the annulus r ∈ [r₀, r₁] — the AUX data of [EnD2] Fig. 2b."""
    g = np.random.default_rng(seed)
    r = np.sqrt(g.uniform(radii[0] ** 2, radii[1] ** 2, n))
    a = g.uniform(0, 2 * math.pi, n)
    return torch.tensor(np.stack([r * np.cos(a), r * np.sin(a)], 1), dtype=torch.float32)


def _points(x: torch.Tensor, y: torch.Tensor | None, name: str) -> ArrayDataset:
    return ArrayDataset(x, y if y is not None else torch.full((len(x),), -1, dtype=torch.long), name)


@register_dataset("spirals")
def spirals(root: str | None = None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """Train: 1000 points per class (seed 1); test: 1000 per class (seed 2). ([EnD2] §4, Table 1)."""
    xtr, ytr = make_spirals(1000, seed=1)
    xte, yte = make_spirals(1000, seed=2)
    return Source(
        test=_points(xte, yte, "spirals_test"),
        train=_points(xtr, ytr, "spirals_train"),
        num_classes=3,
        mean=(0.0, 0.0),
        std=(0.5, 0.5),
        in_channels=2,
        input_kind="points",
    )


@register_dataset("spirals_ring")
def spirals_ring(root: str | None = None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """The AUX ring (3000 points, seed 3 for train/AUX use, 3000 points seed 4 as an OOD test set)."""
    return Source(test=_points(make_ring(3000, 4), None, "spirals_ring"), train=_points(make_ring(3000, 3), None, "spirals_ring_aux"),
                  in_channels=2, input_kind="points")


@register_dataset("spirals_far")
def spirals_far(root: str | None = None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """OOD points farther out than the AUX ring (r ∈ [2.5, 4]), never seen in training."""
    return Source(test=_points(make_ring(3000, 5, (2.5, 4.0)), None, "spirals_far"), in_channels=2, input_kind="points")


# ---------------------------------------------------------------- digits (scikit-learn, 8×8)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)  # [1797, 1, 8, 8] in [0, 1]
    return x, torch.tensor(d.target, dtype=torch.long)


def _digits_split() -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split: 400 test images, the rest train (val is split off by the loader)."""
    from sklearn.model_selection import train_test_split

    _, y = _digits()
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=400, random_state=0, stratify=y.numpy())
    return np.sort(tr), np.sort(te)


@register_dataset("digits")
def digits(root: str | None = None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """scikit-learn ``load_digits``: 1797 real 8×8 grey images of 10 digits, pixel/16 ∈ [0, 1]."""
    x, y = _digits()
    tr, te = _digits_split()
    return Source(
        test=ArrayDataset(x[te], y[te], "digits_test"),
        train=ArrayDataset(x[tr], y[tr], "digits_train"),
        num_classes=10,
        mean=(0.30,),
        std=(0.38,),
        in_channels=1,
        input_kind="image",
        image_size=8,
    )


def _digits_test_images() -> torch.Tensor:
    x, _ = _digits()
    return x[_digits_split()[1]]


def _ood(x: torch.Tensor, name: str) -> Source:
    return Source(test=ArrayDataset(x.clamp(0, 1).contiguous(), torch.full((len(x),), -1, dtype=torch.long), name), in_channels=1, image_size=8)


@register_dataset("digits_inverted")
def digits_inverted(root: str | None = None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """Test digits with inverted intensities (1 − x)."""
    return _ood(1.0 - _digits_test_images(), "digits_inverted")


@register_dataset("digits_rotated")
def digits_rotated(root: str | None = None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """Test digits rotated by 90°."""
    return _ood(torch.rot90(_digits_test_images(), 1, dims=(2, 3)), "digits_rotated")


@register_dataset("digits_noise")
def digits_noise(root: str | None = None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """Uniform-noise 8×8 images (as many as the test set, fixed seed)."""
    g = torch.Generator().manual_seed(7)
    return _ood(torch.rand(400, 1, 8, 8, generator=g), "digits_noise")


@register_dataset("digits_shuffled")
def digits_shuffled(root: str | None = None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    """Training digits with their pixels randomly permuted (per image, fixed seed): an AUX set with the
    digits' intensity statistics but no digit structure. ``train`` = from training images."""
    x, _ = _digits()
    tr, te = _digits_split()
    g = torch.Generator().manual_seed(11)

    def shuffle(imgs: torch.Tensor) -> torch.Tensor:
        flat = imgs.reshape(len(imgs), -1)
        perm = torch.argsort(torch.rand(flat.shape, generator=g), dim=1)
        return torch.gather(flat, 1, perm).reshape(imgs.shape)

    test = _ood(shuffle(x[te]), "digits_shuffled").test
    train = _ood(shuffle(x[tr]), "digits_shuffled_aux").test
    return Source(test=test, train=train, in_channels=1, image_size=8)
