"""Small tensor helpers shared by the math modules (dtype promotion, masks, reductions)."""

from __future__ import annotations

import math
from typing import Optional

import torch

Reduction = str  # "none" | "sum" | "mean"

#: Range of log-concentrations used when turning logits into Dirichlet parameters.
#: exp(30) ~ 1e13 keeps lgamma/digamma of alpha_0 finite and accurate in float32
#: (float64: exp(80) ~ 5.5e34). The lower end keeps alpha > 0 when no offset is added
#: *and* keeps the derivatives finite: ψ'(α) ≈ 1/α² (the reverse-KL gradient and the
#: backward of lgamma/digamma) is ≤ e^60 ≈ 1.1e26 in float32 at α ≥ e^-30 (at e^-80 it
#: overflowed to inf and gave NaN gradients), and ≤ e^600 ≈ 3.8e260 in float64 at
#: α ≥ e^-300; multiplied by a target concentration ≤ ``shared.dirichlet.MAX_PRECISION``
#: + offset it stays below the largest finite value (3.4e38 / 1.8e308).
MAX_LOG_ALPHA = {torch.float32: 30.0, torch.float64: 80.0}
MIN_LOG_ALPHA = {torch.float32: -30.0, torch.float64: -300.0}


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half inputs are upcast)."""
    for t in tensors:
        if t.dtype == torch.float64:
            return torch.float64
    return torch.float32


def upcast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype`` (no copy when it already is)."""
    return t if t.dtype == dtype else t.to(dtype)


def reduce_loss(loss: torch.Tensor, reduction: Reduction, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Apply an optional mask (broadcast over leading dims) and a reduction.

    ``mean`` divides the sum by the number of (unmasked) positions, at least 1: a loss
    over no elements (empty batch, all-false mask) is exactly 0, still connected to the
    graph (``.backward()`` works and gives zero gradients), never NaN.
    Masked positions are replaced by exact zeros (``where``), so a non-finite value
    at a padding position never leaks into the result. (Its *gradient* is only safe
    when the masked inputs were made harmless before the computation, see
    :func:`mask_rows`: a NaN in the unused branch of ``where`` still poisons the
    backward pass.)
    """
    check_reduction(reduction)
    if mask is not None:
        mask = torch.broadcast_to(mask.to(torch.bool), loss.shape)
        loss = torch.where(mask, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if mask is None:
        return loss.sum() / max(loss.numel(), 1)
    return loss.sum() / mask.sum().clamp_min(1).to(loss.dtype)


def check_reduction(reduction: Reduction) -> None:
    """ValueError unless ``reduction`` is ``"none"``, ``"sum"`` or ``"mean"``."""
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


def check_mask(mask: Optional[torch.Tensor], lead_shape: torch.Size, name: str = "mask") -> Optional[torch.Tensor]:
    """``mask`` as a bool tensor broadcast to ``lead_shape`` (the leading dims of the loss), or None."""
    if mask is None:
        return None
    try:
        return torch.broadcast_to(torch.as_tensor(mask).to(torch.bool), lead_shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(torch.as_tensor(mask).shape)} does not broadcast to the loss positions "
            f"{tuple(lead_shape)}"
        ) from None


def mask_rows(x: torch.Tensor, mask: Optional[torch.Tensor], fill: float, row_dims: int = 1) -> torch.Tensor:
    """``x`` with the positions where ``mask`` is False replaced by ``fill`` *before* any computation.

    ``mask`` has ``x``'s leading shape (``x.shape[:-row_dims]``). The gradient of
    ``where`` to the replaced entries is exactly zero, and what is computed from them
    is a harmless constant, so masked rows contribute zero value and zero gradient
    whatever they hold (−inf, ±1e4, NaN).
    """
    if mask is None:
        return x
    m = mask.reshape(mask.shape + (1,) * row_dims)
    return torch.where(m, x, torch.full((), fill, dtype=x.dtype, device=x.device))


def check_positive_finite(value: float, name: str, allow_zero: bool = False) -> float:
    """``float(value)``; ValueError naming ``name`` unless it is finite and > 0 (≥ 0 with ``allow_zero``)."""
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def check_ensemble_shapes(student: torch.Tensor, teacher: torch.Tensor, name: str = "teacher_log_probs") -> None:
    """Student ``[..., K]`` vs teacher ``[..., M, K]``: same leading dims and K."""
    if teacher.dim() != student.dim() + 1:
        raise ValueError(
            f"{name} must have shape [..., M, K] with one more dim than the student logits {tuple(student.shape)}, "
            f"got {tuple(teacher.shape)}"
        )
    if teacher.shape[:-2] != student.shape[:-1] or teacher.shape[-1] != student.shape[-1]:
        raise ValueError(
            f"{name} shape {tuple(teacher.shape)} does not match student logits {tuple(student.shape)} "
            "(expected [..., M, K] with the same leading dims and K)"
        )


def xlogy_safe(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """p * log_q with the convention 0 * log 0 = 0 (log_q may be -inf where p == 0).

    0·(−inf) = NaN is mapped to 0; p > 0 with log_q = −inf stays −inf. (In-place
    ``nan_to_num_`` on the product: a ``where`` costs a second full pass.)
    """
    return torch.nan_to_num_(p * log_q, nan=0.0, posinf=math.inf, neginf=-math.inf)
