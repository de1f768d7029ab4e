"""Dirichlet distribution math: Proxy-Dirichlet targets, KL divergence, log-density, entropy.

Notation: Dir(π | α), α₀ = Σ_k α_k, ln B(α) = Σ_k lnΓ(α_k) − lnΓ(α₀).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from shared._tensor import compute_dtype, upcast, xlogy_safe

#: Smallest mean KL used in the precision estimate; keeps β̂₀ finite when all
#: members agree exactly (β̂₀ ≤ (K−1)/(2·1e-12)).
MIN_DIVERGENCE = 1e-12
#: Row chunks of the teacher tensor hold about this many elements: cache-sized on the CPU; on a GPU large
#: enough that kernel launches do not dominate (H100, N = 1024, M = 5, V = 40k: 2^22 → 19x CE, 2^25 → 6x).
CHUNK_ELEMENTS = 1 << 20
CUDA_CHUNK_ELEMENTS = 1 << 25


class ProxyTarget(NamedTuple):
    """A Proxy-Dirichlet target: ``beta`` ``[..., K]`` and the precision estimate ``precision`` ``[...]`` (β̂₀, offset excluded)."""

    beta: torch.Tensor
    precision: torch.Tensor


def proxy_target(
    log_probs: torch.Tensor, estimator: str = "mkl", offset: float = 1.0, temperature: float = 1.0
) -> ProxyTarget:
    """Proxy-Dirichlet target of an ensemble ([Proxy] eq. 17).

    p̄ = (1/M) Σ_m p_m and

    - ``"mkl"`` (Minka/Stirling, [Proxy] eq. 17): β̂₀ = (K−1) / (2 · (1/M) Σ_m KL(p̄‖p_m))
    - ``"epkl"``: β̂₀ = (K−1) / EPKL, with EPKL = (1/M²) Σ_{m,n} KL(p_m‖p_n)
      (for a true Dirichlet, EPKL = (K−1)/α₀ exactly)

    β = p̄ · β̂₀ + offset.

    Computed under ``no_grad`` in float32 (float64 inputs stay float64), in row chunks
    so that temporaries stay cache-sized: the only full-size allocation is β itself. The divergence is floored at ``MIN_DIVERGENCE`` so identical
    members give a large finite precision.

    Args:
        log_probs: ``[..., M, K]`` member log-probabilities (−inf allowed).
        estimator: ``"mkl"`` or ``"epkl"``.
        offset: added to every concentration (1 in [Proxy]).
        temperature: members are tempered first, p_m ∝ p_m^(1/T) (log_softmax(ln p_m / T)).

    Returns:
        :class:`ProxyTarget` (``beta``, ``precision``).
    """
    if estimator not in ("mkl", "epkl"):
        raise ValueError(f"estimator must be 'mkl' or 'epkl', got {estimator!r}")
    if log_probs.dim() < 2:
        raise ValueError(f"log_probs must have shape [..., M, K], got {tuple(log_probs.shape)}")
    dtype = compute_dtype(log_probs)
    k, m = log_probs.shape[-1], log_probs.shape[-2]
    lead = log_probs.shape[:-2]
    flat = log_probs.reshape(-1, m, k)
    n = flat.shape[0]
    rows = max(1, (CUDA_CHUNK_ELEMENTS if log_probs.is_cuda else CHUNK_ELEMENTS) // (m * k))
    beta = torch.empty(n, k, dtype=dtype, device=log_probs.device)
    precision = torch.empty(n, dtype=dtype, device=log_probs.device)
    with torch.no_grad():
        for s in range(0, n, rows):
            lp = upcast(flat[s : s + rows], dtype)
            if temperature != 1.0:
                lp = torch.log_softmax(lp / temperature, dim=-1)
            p = lp.exp()
            mean = p.mean(-2)
            cross = xlogy_safe(mean, lp.mean(-2)).sum(-1)  # Σ_k p̄_k · mean_m ln p_mk
            if estimator == "mkl":
                divergence = 2.0 * (xlogy_safe(mean, mean.log()).sum(-1) - cross)  # 2 · E_m KL(p̄‖p_m)
            else:
                divergence = xlogy_safe(p, lp).sum(-1).mean(-1) - cross  # EPKL = −E_m H[p_m] − cross
            divergence = torch.nan_to_num(divergence, nan=math.inf).clamp_min(MIN_DIVERGENCE)
            prec = (k - 1) / divergence
            precision[s : s + rows] = prec
            beta[s : s + rows] = mean.mul_(prec.unsqueeze(-1)).add_(offset)
    beta, precision = beta.reshape(lead + (k,)), precision.reshape(lead)
    return ProxyTarget(beta, precision)


def log_normalizer(alpha: torch.Tensor) -> torch.Tensor:
    """ln B(α) = Σ_k lnΓ(α_k) − lnΓ(α₀)."""
    return torch.lgamma(alpha).sum(-1) - torch.lgamma(alpha.sum(-1))


def kl_divergence(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """KL[Dir(α)‖Dir(β)] in closed form ([Proxy] eq. 13–14)::

        lnΓ(α₀) − Σ lnΓ(α_k) − lnΓ(β₀) + Σ lnΓ(β_k) + Σ (α_k − β_k)(ψ(α_k) − ψ(α₀))

    Differentiable in both arguments; half inputs are computed in float32.
    """
    dtype = compute_dtype(alpha, beta)
    a, b = upcast(alpha, dtype), upcast(beta, dtype)
    a0 = a.sum(-1)
    return (
        log_normalizer(b)
        - log_normalizer(a)
        + ((a - b) * (torch.digamma(a) - torch.digamma(a0).unsqueeze(-1))).sum(-1)
    )


def log_likelihood(alpha: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
    """Dirichlet log-density ln Dir(π|α) = Σ_k (α_k − 1) ln π_k − ln B(α) ([EnD2] eq. 8)."""
    dtype = compute_dtype(alpha, log_pi)
    a, lpi = upcast(alpha, dtype), upcast(log_pi, dtype)
    return ((a - 1.0) * lpi).sum(-1) - log_normalizer(a)


def entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Differential entropy H[Dir(α)] = ln B(α) + (α₀ − K) ψ(α₀) − Σ_k (α_k − 1) ψ(α_k)."""
    dtype = compute_dtype(alpha)
    a = upcast(alpha, dtype)
    a0 = a.sum(-1)
    k = a.shape[-1]
    return log_normalizer(a) + (a0 - k) * torch.digamma(a0) - ((a - 1.0) * torch.digamma(a)).sum(-1)
