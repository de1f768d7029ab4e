"""Fast float32 lnΓ, ψ and ψ' together, for large tensors of positive arguments.

torch's CPU ``lgamma``/``digamma``/``polygamma`` are scalar loops (digamma runs a
recurrence of up to 10 steps per element). Losses over a 40k-class vocabulary need
all three on every logit, so this module evaluates them jointly with a handful of
vectorised tensor ops on cache-sized chunks:

- shift: y = x + 6 for every element, with the recurrences
  lnΓ(x) = lnΓ(y) − Σ_{j<3} ln((x+2j)(x+2j+1)),  ψ(x) = ψ(y) − Σ_{i<6} 1/(x+i),
  ψ'(x) = ψ'(y) + Σ_{i<6} 1/(x+i)²  (pairs of factors keep the logs to three and cannot
  overflow for x ≤ 1e19)
- asymptotic (Stirling / de Moivre) series at y ≥ 6, r = 1/y:
  lnΓ(y) = (y − ½) ln y − y + ½ ln 2π + r/12 − r³/360 + r⁵/1260
  ψ(y)   = ln y − r/2 − r²/12 + r⁴/120 − r⁶/252
  ψ'(y)  = r + r²/2 + r³/6 − r⁵/30 + r⁷/42

Truncation error < 3e-9 relative at y ≥ 6, far below float32 resolution; agreement
with scipy is tested in ``tests/shared/test_special.py``. Use only for float32 —
float64 callers keep torch's exact functions.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gamma_terms(x: torch.Tensor, with_trigamma: bool = True) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(lnΓ(x), ψ(x), ψ'(x) or None) for float32 ``0 < x ≤ 1e19``; see the module docstring."""
    inv = torch.zeros_like(x)  # Σ 1/(x+i)
    inv2 = torch.zeros_like(x) if with_trigamma else None  # Σ 1/(x+i)²
    log_prod = torch.zeros_like(x)  # Σ ln(x+i)
    for j in range(3):
        lo = x + float(2 * j)
        hi = lo + 1.0
        log_prod.add_(torch.mul(lo, hi).log_())
        lo.reciprocal_()
        hi.reciprocal_()
        inv.add_(lo).add_(hi)
        if inv2 is not None:
            inv2.addcmul_(lo, lo).addcmul_(hi, hi)
    y = x + 6.0
    log_y = y.log()
    r = y.reciprocal_()
    r2 = r * r
    lg = (r2 * (1.0 / 1260.0)).sub_(1.0 / 360.0).mul_(r2).add_(1.0 / 12.0).mul_(r)
    lg.add_((x + 5.5).mul_(log_y)).sub_(x).sub_(6.0 - _HALF_LOG_2PI).sub_(log_prod)
    dg = (r2 * (1.0 / 252.0)).neg_().add_(1.0 / 120.0).mul_(r2).neg_().add_(1.0 / 12.0).mul_(r2)
    dg.add_(r, alpha=0.5).neg_().add_(log_y).sub_(inv)
    tg = None
    if inv2 is not None:
        tg = (r2 * (1.0 / 42.0)).sub_(1.0 / 30.0).mul_(r2).add_(1.0 / 6.0).mul_(r).add_(0.5).mul_(r2).add_(r).add_(inv2)
    return lg, dg, tg


def expm1_accurate(x: torch.Tensor) -> torch.Tensor:
    """eˣ − 1 without cancellation near 0, from ``exp`` and ``log`` only (vectorised everywhere, unlike
    torch's CPU ``expm1``): Kahan's trick, with u = eˣ,

        eˣ − 1 = x                      if u = 1
               = u − 1                  if u < ½  (no cancellation there)
               = (u − 1) · x / ln u     otherwise

    (Goldberg, "What every computer scientist should know about floating-point arithmetic", 1991, Thm. 4's
    idea applied to exp; Higham, *Accuracy and Stability*, 2nd ed., §1.14.1). Within 2 ulp of the exact
    value (checked against float64 in ``tests/shared/test_special.py``); −inf gives −1.
    """
    u = torch.exp(x)
    return torch.where(u == 1.0, x, torch.where(u < 0.5, u - 1.0, (u - 1.0) * x / torch.log(u)))


def log1p_accurate(x: torch.Tensor) -> torch.Tensor:
    """ln(1 + x) without cancellation near 0, from ``log`` only (Goldberg 1991, Theorem 4): with u = 1 + x,
    ln(1 + x) = x if u = 1, else ln(u) · x / (u − 1). Within 2 ulp; x = −1 gives −inf."""
    u = 1.0 + x
    return torch.where(u == 1.0, x, torch.log(u) * x / (u - 1.0))
