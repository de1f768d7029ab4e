"""Matplotlib (Agg) PNG writers: rejection curves and ID-vs-OOD uncertainty histograms.

Files are written to a temporary name and renamed, so an interrupted run never leaves
a half-written PNG.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shared.io import atomic_savefig  # noqa: E402
from shared.metrics import ArrayLike, _np, rejection_curve  # noqa: E402


def save_figure_atomic(fig: "plt.Figure", path: str, dpi: int = 120) -> str:
    """Save ``fig`` as PNG at ``path`` via a temp file + rename; closes the figure."""
    try:
        atomic_savefig(path, fig, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_rejection_curves(
    error: ArrayLike,
    uncertainties: Mapping[str, ArrayLike],
    path: str,
    title: Optional[str] = None,
    error_label: str = "error",
) -> str:
    """Rejection curves ([EnD2] Fig. 5) for several uncertainty measures on one error vector,
    with the oracle and random curves; the legend gives each measure's PRR."""
    from shared.metrics import prediction_rejection_ratio

    fig, ax = plt.subplots(figsize=(5, 4))
    curve = None
    for name, u in uncertainties.items():
        curve = rejection_curve(u, error)
        prr = prediction_rejection_ratio(u, error)
        ax.plot(100 * curve["fraction_rejected"], curve["uncertainty"], label=f"{name} (PRR {prr:.3f})")
    if curve is not None:
        ax.plot(100 * curve["fraction_rejected"], curve["oracle"], "k--", label="oracle")
        ax.plot(100 * curve["fraction_rejected"], curve["random"], "k:", label="random")
    ax.set_xlabel("% examples rejected to oracle")
    ax.set_ylabel(f"mean {error_label}")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return save_figure_atomic(fig, path)


def plot_uncertainty_histograms(
    id_scores: ArrayLike,
    ood_scores: Mapping[str, ArrayLike],
    path: str,
    measure: str = "uncertainty",
    title: Optional[str] = None,
    bins: int = 40,
) -> str:
    """Histograms of an uncertainty measure in-domain vs each OOD set ([EnD2] Fig. 4)."""
    id_arr = _np(id_scores)
    arrays: Sequence[np.ndarray] = [id_arr] + [_np(v) for v in ood_scores.values()]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hist(id_arr, bins=edges, alpha=0.6, density=True, label="in-domain")
    for name, values in ood_scores.items():
        ax.hist(_np(values), bins=edges, alpha=0.5, density=True, label=name)
    ax.set_xlabel(measure)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return save_figure_atomic(fig, path)
