"""Small tensor helpers shared by the math modules (dtype promotion, masks, reductions)."""

from __future__ import annotations

import math
from typing import Optional

import torch

Reduction = str  # "none" | "sum" | "mean"

#: Range of log-concentrations used when turning logits into Dirichlet parameters.
#: exp(30) ~ 1e13 keeps lgamma/digamma of alpha_0 finite and accurate in float32
#: (float64: exp(80) ~ 5.5e34); the lower end keeps alpha > 0 (no underflow to 0,
#: where lgamma is infinite) when no offset is added.
MAX_LOG_ALPHA = {torch.float32: 30.0, torch.float64: 80.0}
MIN_LOG_ALPHA = {torch.float32: -80.0, torch.float64: -700.0}


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

    ``mean`` with a mask divides by the number of unmasked positions (at least 1).
    Masked positions are replaced by exact zeros (``where``), so a non-finite value
    at a padding position never leaks into the result or its gradient.
    """
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    if mask is not None:
        mask = torch.broadcast_to(mask.to(torch.bool), loss.shape)
        loss = torch.where(mask, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if mask is None:
        return loss.mean()
    return loss.sum() / mask.sum().clamp_min(1).to(loss.dtype)


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
