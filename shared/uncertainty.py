"""Measures of total, data and knowledge uncertainty for ensembles and Dirichlets.

Notation: an ensemble of M categorical distributions p_m over K classes,
p̄ = (1/M) Σ_m p_m; a Dirichlet Dir(α) with α₀ = Σ_k α_k and p̂ = α/α₀.

Decomposition ([EnD2] eq. 4 and 10)::

    total = H[p̄]            data = E_m H[p_m]        mutual_information = total − data
    epkl  = E_{m,n} KL(p_m‖p_n)    rmi = E_m KL(p̄‖p_m)  and  epkl = mutual_information + rmi

All functions take any leading shape; the class axis is last, the ensemble axis
just before it. Half-precision inputs are computed in float32, float64 stays
float64; the outputs have the computation dtype.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from shared._tensor import MAX_LOG_ALPHA, MIN_LOG_ALPHA, compute_dtype, upcast, xlogy_safe

from shared.uncertainty_keys import UNCERTAINTY_KEYS  # noqa: E402  (torch-free home of the names)


def ensemble_uncertainty(log_probs: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Uncertainty measures of an ensemble from member log-probabilities.

    Args:
        log_probs: ``[..., M, K]`` log p_m(y = k); ``-inf`` allowed for zero probabilities.

    Returns:
        dict of ``[...]`` tensors with keys ``total``, ``data``, ``mutual_information``,
        ``epkl``, ``rmi``, ``confidence``:

        - total = −Σ_k p̄_k ln p̄_k
        - data = −(1/M) Σ_m Σ_k p_mk ln p_mk
        - mutual_information = total − data
        - epkl = (1/M²) Σ_{m,n} KL(p_m‖p_n) = −data − Σ_k p̄_k · (1/M) Σ_n ln p_nk
        - rmi = (1/M) Σ_m KL(p̄‖p_m) = −total − Σ_k p̄_k · (1/M) Σ_m ln p_mk
        - confidence = max_k p̄_k

        epkl and rmi are +inf when a member gives zero probability to a class another
        member supports (the KL is then genuinely infinite).
    """
    if log_probs.dim() < 2:
        raise ValueError(f"log_probs must have shape [..., M, K], got {tuple(log_probs.shape)}")
    dtype = compute_dtype(log_probs)
    lp = upcast(log_probs, dtype)
    m = lp.shape[-2]
    probs = lp.exp()
    # p̄ from the members' probabilities (a sum over M, cheaper than a logsumexp over the non-contiguous M axis);
    # ln p̄ = −inf only where p̄ underflows to 0, whose term 0·ln p̄ is 0 either way
    mean = probs.sum(-2).div_(m)  # [..., K]
    total = -xlogy_safe(mean, mean.log()).sum(-1)
    data = -xlogy_safe(probs, lp).sum(-1).mean(-1)
    mean_log = lp.mean(-2)  # (1/M) Σ_m ln p_mk
    cross = xlogy_safe(mean, mean_log).sum(-1)  # Σ_k p̄_k · mean_m ln p_mk
    return _decomposition(total, data, cross, mean)


def _decomposition(total: torch.Tensor, data: torch.Tensor, cross: torch.Tensor, mean: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The measures from total, data, ``cross`` = Σ_k p̄_k Σ_m w_m ln p_mk and the mixture p̄ (eq. 4 and 10)."""
    return {
        "total": total,
        "data": data,
        "mutual_information": total - data,
        "epkl": -data - cross,
        "rmi": -total - cross,
        "confidence": mean.amax(-1),
    }


def weighted_ensemble_uncertainty(log_probs: torch.Tensor, log_weights: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Measures of a weighted mixture P_w = Σ_m w_m P_m (e.g. the expectation-of-products chain rule of
    structured prediction, where w_m is member m's posterior given the prefix).

    Args:
        log_probs: ``[..., M, K]`` ln P_m(k) (−inf allowed).
        log_weights: ``[..., M]`` ln w_m, Σ_m w_m = 1.

    Returns:
        ``total`` = H[P_w], ``data`` = Σ_m w_m H[P_m], ``mutual_information`` = total − data,
        ``epkl`` = Σ_{m,n} w_m w_n KL(P_m‖P_n) = −data − Σ_k P_w,k Σ_n w_n ln P_nk,
        ``rmi`` = Σ_m w_m KL(P_w‖P_m) = −total − Σ_k P_w,k Σ_m w_m ln P_mk,
        ``confidence`` = max_k P_w,k. With w_m = 1/M these are :func:`ensemble_uncertainty`.

        epkl and rmi are +inf when a member of weight > 0 gives zero probability to a class the mixture supports
        (as in :func:`ensemble_uncertainty`); a member of weight 0 drops out.
    """
    dtype = compute_dtype(log_probs, log_weights)
    lp = upcast(log_probs, dtype)
    lw = upcast(log_weights, dtype).unsqueeze(-1)  # [..., M, 1]
    w = lw.exp()
    probs = lp.exp()
    mean = (w * probs).sum(-2)  # [..., K] P_w (a sum over M: cheaper than a logsumexp over the non-contiguous M axis)
    # ln P_w = −inf only where P_w underflows to 0, whose term 0·ln P_w is 0 either way
    total = -xlogy_safe(mean, mean.log()).sum(-1)
    data = -(w.squeeze(-1) * xlogy_safe(probs, lp).sum(-1)).sum(-1)
    # Σ_k P_w,k Σ_m w_m ln P_mk; w_m = 0 (underflow) with ln P_mk = −inf counts 0, w_m > 0 with it −inf (epkl, rmi = +inf)
    cross = xlogy_safe(mean, xlogy_safe(w, lp).sum(-2)).sum(-1)
    return _decomposition(total, data, cross, mean)


def dirichlet_uncertainty(alphas: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Closed-form uncertainty measures of Dir(α) ([EnD2] eq. 10; Malinin & Gales 2019).

    Args:
        alphas: ``[..., K]`` positive concentrations.

    Returns:
        dict of ``[...]`` tensors (computed in float64 for accuracy, returned in the
        input's computation dtype), with p̂ = α/α₀:

        - total = −Σ p̂_k ln p̂_k
        - data = E_{π~Dir(α)} H[π] = −Σ p̂_k (ψ(α_k+1) − ψ(α₀+1))
        - mutual_information = total − data  (≥ 0; not clamped)
        - epkl = E_{π,π'~Dir(α)} KL(π‖π') = (K−1)/α₀
        - rmi = E_{π~Dir(α)} KL(p̂‖π) = Σ p̂_k (ln p̂_k − ψ(α_k) + ψ(α₀))
        - confidence = max_k p̂_k
    """
    if alphas.dim() < 1:
        raise ValueError("alphas must have a class axis")
    out_dtype = compute_dtype(alphas)
    a = alphas.to(torch.float64)
    k = a.shape[-1]
    a0 = a.sum(-1, keepdim=True)
    p = a / a0
    log_p = a.log() - a0.log()
    total = -xlogy_safe(p, log_p).sum(-1)
    data = -(p * (torch.digamma(a + 1.0) - torch.digamma(a0 + 1.0))).sum(-1)
    rmi = (p * (log_p - torch.digamma(a) + torch.digamma(a0))).sum(-1)
    epkl = (k - 1) / a0.squeeze(-1)
    out = {
        "total": total,
        "data": data,
        "mutual_information": total - data,
        "epkl": epkl,
        "rmi": rmi,
        "confidence": p.amax(-1),
    }
    return {key: value.to(out_dtype) for key, value in out.items()}


PARAMETRIZATIONS = ("exp", "softplus")
#: floor added to softplus concentrations when there is no offset, so that α > 0
SOFTPLUS_FLOOR = 1e-8


def alphas_from_logits(
    logits: torch.Tensor,
    offset: float = 0.0,
    parametrization: str = "exp",
    clip_precision: Optional[float] = None,
) -> torch.Tensor:
    """Dirichlet concentrations from network outputs: α = exp(z) + offset (or softplus(z) + offset).

    Overflow-safe: z is clamped to [MIN_LOG_ALPHA, MAX_LOG_ALPHA] ([−30, 30] in float32,
    [−300, 80] in float64) before the exponential, so α stays finite and positive for
    logits of any size (the gradient is zero outside that range), and the derivatives of
    lnΓ/ψ at α (≈ 1/α, 1/α²) stay finite too. With
    ``parametrization="softplus"``, α = softplus(z) + offset (a floor of
    :data:`SOFTPLUS_FLOOR` = 1e-8 is added when offset is 0 so that α > 0).

    ``clip_precision=A`` caps the precision α₀ = Σ_k α_k at A, keeping the mean α/α₀, in log
    space (differentiable; the gradient along the precision is zero where the cap is active)::

        ln α_k ← ln α_k − max(0, logsumexp_j ln α_j − ln A)

    Half-precision logits are computed and returned in float32.
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be 'exp' or 'softplus', got {parametrization!r}")
    if clip_precision is not None and not (math.isfinite(float(clip_precision)) and float(clip_precision) > 0):
        raise ValueError(f"clip_precision must be a finite number > 0, got {clip_precision!r}")
    dtype = compute_dtype(logits)
    z = upcast(logits, dtype)
    if parametrization == "exp":
        log_alpha = z.clamp(MIN_LOG_ALPHA[dtype], MAX_LOG_ALPHA[dtype])
        if clip_precision is None:
            alphas = log_alpha.exp()
            return alphas + offset if offset else alphas
        if offset:
            log_alpha = torch.logaddexp(log_alpha, torch.full((), math.log(offset), dtype=dtype, device=z.device))
    else:
        alphas = torch.nn.functional.softplus(z) + (offset if offset else SOFTPLUS_FLOOR)
        if clip_precision is None:
            return alphas
        log_alpha = alphas.log()
    excess = (torch.logsumexp(log_alpha, dim=-1, keepdim=True) - math.log(float(clip_precision))).clamp_min(0.0)
    # floored at MIN_LOG_ALPHA after the rescaling too, so ψ'(α) ≈ 1/α² stays finite (see shared._tensor)
    return (log_alpha - excess).clamp_min(MIN_LOG_ALPHA[dtype]).exp()


def dirichlet_mean_log_probs(logits: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """ln p̂ with p̂ = α/α₀ the expected categorical of Dir(α), α = exp(z) + offset ([EnD2] eq. 9), in log space:
    ln α_k = logaddexp(z_k, ln offset), ln p̂_k = ln α_k − logsumexp_j ln α_j (finite for any z; ``offset = 0``
    gives ``log_softmax(z)``). Half-precision inputs are computed in float32."""
    z = upcast(logits, compute_dtype(logits))
    if offset == 0:
        return torch.log_softmax(z, dim=-1)
    log_alpha = torch.logaddexp(z, torch.full_like(z, math.log(offset)))
    return log_alpha - torch.logsumexp(log_alpha, dim=-1, keepdim=True)
