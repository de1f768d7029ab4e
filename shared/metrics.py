"""Evaluation metrics: rejection (PRR), OOD detection, calibration, NLL, Brier, accuracy.

Inputs may be numpy arrays or torch tensors (any float dtype); outputs are Python
floats (or numpy arrays for curves). All computations are vectorised (sorting,
cumulative sums, ``bincount``), never O(N²).

A metric over no examples is undefined: every function here raises ``ValueError``
naming the empty argument (never returns NaN for it). The one documented NaN is
:func:`prediction_rejection_ratio` when there is no error to reject.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Dict, Tuple, Union

import numpy as np

# torch and sklearn are imported where they are used (≈ 1.5 s and 1 s): report tools that only
# rank numpy arrays (``endist-seq-eval``) must not pay for them at import.
if TYPE_CHECKING:  # pragma: no cover
    import torch

ArrayLike = Union[np.ndarray, "torch.Tensor", list]


def _np(x: ArrayLike, dtype=np.float64) -> np.ndarray:
    torch = sys.modules.get("torch")  # x can only be a tensor once torch is imported
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64 if dtype == np.float64 else x.dtype).numpy()
    return np.asarray(x, dtype=dtype)


def _check_same_length(a: np.ndarray, b: np.ndarray, names: Tuple[str, str]) -> None:
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must be 1-D and of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError(f"{names[0]} is empty")


def rejection_curve(uncertainty: ArrayLike, error: ArrayLike) -> Dict[str, np.ndarray]:
    """Prediction-rejection curves ([EnD2] App. B, Fig. 5).

    Examples are rejected to an oracle (their error becomes 0) in order of decreasing
    uncertainty. Returns, for fractions rejected f = i/N (i = 0..N), the mean error of
    the whole set after rejection for the ``uncertainty`` order, the ``oracle`` order
    (decreasing error) and the expected ``random`` order (a straight line).

    Ties in uncertainty are broken deterministically by averaging: inside a group of
    equal uncertainty the curve is the expectation over all orders of that group
    (linear interpolation of the cumulative error across the group).
    """
    u = _np(uncertainty)
    e = _np(error)
    _check_same_length(u, e, ("uncertainty", "error"))
    n = u.size
    order = np.argsort(-u, kind="stable")
    u_sorted, e_sorted = u[order], e[order]
    cum = np.concatenate([[0.0], np.cumsum(e_sorted)])  # error removed after rejecting i examples
    # Tie groups: replace the cumulative sum inside each group by linear interpolation.
    boundaries = np.concatenate([[0], np.flatnonzero(np.diff(u_sorted) != 0) + 1, [n]])
    idx = np.arange(n + 1)
    cum_tied = np.interp(idx, boundaries, cum[boundaries])
    total = cum[-1]
    oracle_cum = np.concatenate([[0.0], np.cumsum(np.sort(e)[::-1])])
    fractions = idx / n
    return {
        "fraction_rejected": fractions,
        "uncertainty": (total - cum_tied) / n,
        "oracle": (total - oracle_cum) / n,
        "random": (total / n) * (1.0 - fractions),
    }


def prediction_rejection_ratio(uncertainty: ArrayLike, error: ArrayLike) -> float:
    """PRR = AR_uns / AR_orc ([EnD2] App. B, eq. 16).

    AR_uns is the area between the random and the uncertainty rejection curves, AR_orc
    between the random and the oracle curves. 1 is optimal, 0 random, < 0 perverse.
    ``error`` may be binary (misclassification) or continuous (e.g. 100 − sentence BLEU).
    Returns NaN when AR_orc = 0, which happens exactly when all errors are equal (no error
    to reject, every example equally wrong, or a single example): the ratio is undefined.
    """
    c = rejection_curve(uncertainty, error)
    area_random = np.trapezoid(c["random"], c["fraction_rejected"])
    ar_uns = area_random - np.trapezoid(c["uncertainty"], c["fraction_rejected"])
    ar_orc = area_random - np.trapezoid(c["oracle"], c["fraction_rejected"])
    if ar_orc <= 0:
        return float("nan")
    return float(ar_uns / ar_orc)


def ood_detection_scores(id_scores: ArrayLike, ood_scores: ArrayLike) -> Dict[str, float]:
    """OOD detection with an uncertainty score (OOD = positive class, higher = more uncertain).

    Returns ``roc_auc`` (sklearn ``roc_auc_score``), ``pr_auc`` (average precision),
    and ``fpr_at_95_tpr`` (smallest false-positive rate at which ≥ 95% of OOD inputs
    are detected).
    """
    i, o = _np(id_scores).ravel(), _np(ood_scores).ravel()
    for name, x in (("id_scores", i), ("ood_scores", o)):
        if x.size == 0:
            raise ValueError(f"{name} is empty: OOD detection needs in-domain and OOD scores")
    if not (np.all(np.isfinite(i)) and np.all(np.isfinite(o))):
        raise ValueError("OOD detection scores must be finite")
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    y = np.concatenate([np.zeros(i.size), np.ones(o.size)])
    s = np.concatenate([i, o])
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "pr_auc": float(average_precision_score(y, s)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }


def _probs_labels(probs: ArrayLike, labels: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    p = _np(probs)
    y = _np(labels, dtype=np.int64)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be [N, K] and labels [N], got {p.shape} and {y.shape}")
    if y.size == 0:
        raise ValueError("probs and labels are empty: a metric over no examples is undefined")
    if p.shape[1] == 0:
        raise ValueError(f"probs has no classes (shape {p.shape})")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be in [0, {p.shape[1]}), got range [{y.min()}, {y.max()}]")
    return p, y


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width bins on the max probability (1.0 falls in the last bin)::

        ECE = Σ_b (|B_b| / N) · |acc(B_b) − conf(B_b)|
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, y = _probs_labels(probs, labels)
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    sum_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(bins, weights=correct, minlength=n_bins)
    return float(np.abs(sum_acc - sum_conf).sum() / y.size)


def negative_log_likelihood(probs: ArrayLike, labels: ArrayLike, eps: float = 1e-12) -> float:
    """Mean −ln p(y_true), with probabilities floored at ``eps``."""
    p, y = _probs_labels(probs, labels)
    return float(-np.log(np.maximum(p[np.arange(y.size), y], eps)).mean())


def brier_score(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean Σ_k (p_k − 1[y = k])² (range [0, 2])."""
    p, y = _probs_labels(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(((p - onehot) ** 2).sum(1).mean())


def accuracy(probs: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of argmax predictions equal to the label."""
    p, y = _probs_labels(probs, labels)
    return float((p.argmax(1) == y).mean())


def fit_temperature(logits: ArrayLike, labels: ArrayLike, max_iter: int = 200, tol: float = 1e-10) -> float:
    """Temperature scaling (Guo et al. 2017): T = argmin_T NLL(softmax(logits / T), labels).

    Optimises log T with L-BFGS (strong Wolfe line search) in float64 until the change of
    the NLL is below ``tol``. ``logits`` may also be log-probabilities (e.g. log of an
    ensemble's mean prediction): scaling them by 1/T is the same family.
    """
    import torch

    z = torch.as_tensor(_np(logits))
    y = torch.as_tensor(_np(labels, dtype=np.int64))
    if z.dim() != 2 or y.dim() != 1 or z.shape[0] != y.shape[0]:
        raise ValueError(f"logits must be [N, K] and labels [N], got {tuple(z.shape)} and {tuple(y.shape)}")
    if y.numel() == 0 or z.shape[1] == 0:
        raise ValueError(f"logits is empty (shape {tuple(z.shape)}): fitting a temperature needs examples")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be in [0, {z.shape[1]}), got range [{int(y.min())}, {int(y.max())}]")
    z = torch.nan_to_num(z, neginf=-1e4)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, tolerance_change=tol, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def temperature_scaled_scores(
    logits: ArrayLike, labels: ArrayLike, temperature: float, n_bins: int = 15
) -> Dict[str, float]:
    """NLL and ECE of softmax(logits / T) for a given temperature T (−inf logits count as −1e4).

    Returns ``calibrated_nll``, ``calibrated_ece``.
    """
    import torch

    t = float(temperature)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    z = torch.nan_to_num(torch.as_tensor(_np(logits)), neginf=-1e4)
    if z.numel() == 0:
        raise ValueError(f"logits is empty (shape {tuple(z.shape)}): a metric over no examples is undefined")
    probs = torch.softmax(z / t, dim=-1).numpy()
    return {
        "calibrated_nll": negative_log_likelihood(probs, labels),
        "calibrated_ece": expected_calibration_error(probs, labels, n_bins),
    }


def calibrated_scores(
    fit_logits: ArrayLike, fit_labels: ArrayLike, eval_logits: ArrayLike, eval_labels: ArrayLike, n_bins: int = 15
) -> Dict[str, float]:
    """Temperature fitted on (fit_logits, fit_labels) — e.g. a validation split — then
    NLL and ECE of softmax(eval_logits / T) ([LatentBE] "calibrated" metrics).

    Returns ``temperature``, ``calibrated_nll``, ``calibrated_ece``.
    """
    for name, x in (("fit_logits", fit_logits), ("eval_logits", eval_logits)):
        if np.size(_np(x)) == 0:
            raise ValueError(f"{name} is empty: calibrated scores need examples")
    t = fit_temperature(fit_logits, fit_labels)
    return {"temperature": t, **temperature_scaled_scores(eval_logits, eval_labels, t, n_bins)}
