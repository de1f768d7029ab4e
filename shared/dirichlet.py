"""Dirichlet distribution math: Proxy-Dirichlet targets, KL divergence, log-density, entropy.

Notation: Dir(π | α), α₀ = Σ_k α_k, ln B(α) = Σ_k lnΓ(α_k) − lnΓ(α₀).

Range: :func:`kl_divergence`, :func:`log_likelihood` and :func:`entropy` use torch's lnΓ/ψ and
autograd. Their values and gradients are finite for the concentrations endist produces — α from
:func:`shared.uncertainty.alphas_from_logits` (α ≥ e^-30 in float32) and β from
:func:`proxy_target` (MIN_CONCENTRATION ≤ β_k ≤ MAX_PRECISION + offset) — as the fuzz test
checks; far outside it (α ≪ 1e-13 with β ≫ 1, where ψ'(α)·β ≈ β/α² exceeds the float range)
the gradient can overflow.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch

from shared._compiled import run_chunked, use_compiled
from shared._special import expm1_accurate, log1p_accurate
from shared._tensor import check_positive_finite, compute_dtype, upcast

logger = logging.getLogger(__name__)

#: Largest target precision β̂₀ that :func:`proxy_target` returns. The estimate of [Proxy] eq. 17,
#: (K−1) / (2·RMI), is infinite when the members agree exactly (identical teachers, M = 1): it is
#: capped here. The divergence is computed without cancellation (:func:`member_divergence`: per-class
#: gaps to the members' maximum through expm1/log1p), so float32 estimates stay within ~1e-4 of a
#: float64 computation up to the cap at K = 40k (the textbook difference −H[p̄] − Σ p̄·mean ln p of
#: terms of size ln K lost everything below ~eps·ln K: relative error 3e-3 at β̂₀ ≈ 5e6, 2.8 at 5e8).
#: The cap keeps everything that
#: β enters finite in float32 with a wide margin: lnΓ(β₀) ≈ β₀ ln β₀ ≈ 2.3e11, the unnormalised
#: reverse KL term β_k·|ψ(α_k)| ≈ β_k/α_k ≤ 1e10·e^30 ≈ 1e23 per class, and its gradient term
#: (α_k − β_k)·ψ'(α_k) ≤ 1e10·e^60 ≈ 1.1e36 < 3.4e38, both at the smallest α = e^-30
#: (``shared._tensor.MIN_LOG_ALPHA``).
#: How often the cap is hit: :attr:`ProxyTarget.capped` (per position, no host sync), and a
#: ``logging.DEBUG`` record of the count on the ``shared.dirichlet`` logger when that level is enabled.
MAX_PRECISION = 1e10
#: Smallest target concentration β_k. With ``offset=0`` a class the ensemble gives probability 0
#: (one-hot or underflowing teachers) would get β_k = 0, an improper Dirichlet whose forward KL
#: −Σ α_k ψ(β_k) ≈ Σ α_k / β_k is infinite (ψ(0) = −∞) and whose lnΓ(β_k) is infinite. Flooring
#: β_k at 1e-8 bounds that term by α_k·1e8 ≤ e^30·1e8 ≈ 1e21 per class in float32 (finite for any
#: vocabulary), while changing β by at most 1e-8 where it was positive (no effect with offset 1).
MIN_CONCENTRATION = 1e-8
#: Kept for backward compatibility: divergences below this are treated as 0 (then β̂₀ = MAX_PRECISION).
MIN_DIVERGENCE = 1e-12
#: Row chunks of the teacher tensor hold about this many elements: cache-sized on the CPU; on a GPU large
#: enough that kernel launches do not dominate (H100, N = 1024, M = 5, V = 40k: 2^22 → 19x CE, 2^25 → 6x).
CHUNK_ELEMENTS = 1 << 20
CUDA_CHUNK_ELEMENTS = 1 << 25


class ProxyTarget(NamedTuple):
    """A Proxy-Dirichlet target: ``beta`` ``[..., K]`` and the precision estimate ``precision`` ``[...]`` (β̂₀, offset excluded)."""

    beta: torch.Tensor
    precision: torch.Tensor

    @property
    def capped(self) -> torch.Tensor:
        """``[...]`` bool: positions whose precision estimate hit :data:`MAX_PRECISION` (members agree
        to within float32 rounding). ``target.capped.sum()`` is the count a caller can log (a tensor:
        no host sync until the caller asks for it)."""
        return self.precision >= MAX_PRECISION


def proxy_target(
    log_probs: torch.Tensor, estimator: str = "mkl", offset: float = 1.0, temperature: float = 1.0
) -> ProxyTarget:
    """Proxy-Dirichlet target of an ensemble ([Proxy] eq. 17).

    p̄ = (1/M) Σ_m p_m and

    - ``"mkl"`` (Minka/Stirling, [Proxy] eq. 17): β̂₀ = (K−1) / (2 · (1/M) Σ_m KL(p̄‖p_m))
    - ``"epkl"``: β̂₀ = (K−1) / EPKL, with EPKL = (1/M²) Σ_{m,n} KL(p_m‖p_n)
      (for a true Dirichlet, EPKL = (K−1)/α₀ exactly)

    β̂₀ ← min(β̂₀, MAX_PRECISION) and β = max(p̄ · β̂₀ + offset, MIN_CONCENTRATION).

    **Cap**: members that agree exactly (identical teachers, M = 1) have divergence 0 and
    an infinite estimate; it is capped at :data:`MAX_PRECISION` (1e10, justified there for
    float32). :attr:`ProxyTarget.capped` marks the positions where the cap was hit, and
    when the ``shared.dirichlet`` logger is enabled for DEBUG each call logs how many
    (the function itself stays pure otherwise). Members that disagree infinitely (one
    gives probability 0 where another does not) give β̂₀ = 0, a flat target β = offset.

    Computed under ``no_grad`` in float32 (float64 inputs stay float64), in row chunks
    so that temporaries stay cache-sized: the only full-size allocation is β itself.

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
    offset = check_positive_finite(offset, "offset", allow_zero=True)
    temperature = check_positive_finite(temperature, "temperature")
    dtype = compute_dtype(log_probs)
    k, m = log_probs.shape[-1], log_probs.shape[-2]
    lead = log_probs.shape[:-2]
    flat = log_probs.reshape(-1, m, k)
    n = flat.shape[0]
    rows = max(1, (CUDA_CHUNK_ELEMENTS if log_probs.is_cuda else CHUNK_ELEMENTS) // (m * k))
    with torch.no_grad():
        fused = None
        if use_compiled(flat) and dtype == flat.dtype:
            # the temperature is applied per chunk outside the compiled body, which is compiled once (T = 1)
            tempered = None if temperature == 1.0 else (lambda i, c: torch.log_softmax(c / temperature, dim=-1))
            fused = run_chunked(_target_chunk, rows, (flat,), (0.0,), estimator, float(offset), 1.0, True, prepare=tempered)
        if fused is not None:
            precision, beta = fused
        else:
            beta = torch.empty(n, k, dtype=dtype, device=log_probs.device)
            precision = torch.empty(n, dtype=dtype, device=log_probs.device)
            for s in range(0, n, rows):
                prec, b = _target_chunk(upcast(flat[s : s + rows], dtype), estimator, offset, temperature)
                precision[s : s + rows] = prec
                beta[s : s + rows] = b
    beta, precision = beta.reshape(lead + (k,)), precision.reshape(lead)
    target = ProxyTarget(beta, precision)
    if logger.isEnabledFor(logging.DEBUG) and precision.numel():
        logger.debug(
            "proxy_target: precision capped at MAX_PRECISION=%g at %d of %d positions",
            MAX_PRECISION,
            int(target.capped.sum()),
            precision.numel(),
        )
    return target


def member_divergence(log_probs: torch.Tensor, estimator: str = "mkl") -> torch.Tensor:
    """The members' spread that [Proxy] eq. 17 turns into β̂₀, computed without cancellation.

    ``log_probs`` ``[..., M, K]`` → ``[...]``:

    - ``"mkl"``: 2 · RMI = 2 · (1/M) Σ_m KL(p̄‖p_m) = 2 Σ_k p̄_k d_k, with the per-class Jensen gap
      d_k = ln p̄_k − (1/M) Σ_m ln p_mk ≥ 0
    - ``"epkl"``: EPKL = (1/M²) Σ_{m,n} KL(p_m‖p_n) = Σ_k (1/M) Σ_m (p_mk − p̄_k)(ln p_mk − l̄_k) ≥ 0
      (l̄_k = mean_m ln p_mk; a per-class covariance of p and ln p, non-negative because exp is increasing)

    Both are written in the gaps to the per-class maximum, δ_mk = ln p_mk − max_n ln p_nk ≤ 0::

        d_k = log1p((1/M) Σ_m expm1(δ_mk)) − (1/M) Σ_m δ_mk
        p_mk − p̄_k = e^{max_k} · (expm1(δ_mk) − (1/M) Σ_n expm1(δ_nk))

    so every class contributes a non-negative term of its own relative accuracy. The textbook form
    H-like sums of size ln K minus each other, −H[p̄] − Σ_k p̄_k l̄_k, loses everything below
    ~eps·ln K (float32 at K = 40k: relative error 3e-3 at β̂₀ ≈ 5e6, 2.8 at 5e8); this form keeps
    β̂₀ to ~1e-4 relative up to :data:`MAX_PRECISION` in float32 at the cost of one expm1 and one
    log1p per element. Classes every member gives probability 0 contribute 0; a class one member
    gives 0 and another does not gives +inf (genuinely infinite divergence); classes whose p̄
    underflows to 0 contribute 0, as in ``0·ln 0 = 0``.
    """
    return _divergence_and_mean(log_probs, estimator)[0]


def _target_chunk(lp: torch.Tensor, estimator: str, offset: float, temperature: float, compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(β̂₀, β) of a chunk of member log-probs ``[rows, M, K]`` (the body of :func:`proxy_target`;
    compiled on the CPU by :mod:`shared._compiled`)."""
    k = lp.shape[-1]
    if temperature != 1.0:
        lp = torch.log_softmax(lp / temperature, dim=-1)
    divergence, mean = _divergence_and_mean(lp, estimator, compiled)
    # NaN (inf − inf: infinite disagreement) → precision 0; ≤ MIN_DIVERGENCE (agreement) → the cap
    divergence = torch.nan_to_num(divergence, nan=math.inf)
    prec = torch.where(divergence > MIN_DIVERGENCE, (k - 1) / divergence, math.inf).clamp_(max=MAX_PRECISION)
    return prec, mean.mul_(prec.unsqueeze(-1)).add_(offset).clamp_(min=MIN_CONCENTRATION)


def _divergence_and_mean(lp: torch.Tensor, estimator: str, compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(:func:`member_divergence`, p̄): p̄_k = e^{max_k} (1 + (1/M) Σ_m expm1(δ_mk)) comes for free.
    ``compiled``: expm1/log1p through :func:`shared._special.expm1_accurate`/``log1p_accurate``."""
    if estimator not in ("mkl", "epkl"):
        raise ValueError(f"estimator must be 'mkl' or 'epkl', got {estimator!r}")
    # classes no member supports: top = −inf, clamped so that δ = −inf (expm1 = −1, p̄_k = 0) rather than NaN
    top = lp.amax(-2, keepdim=True).clamp_min_(-1e30)
    delta = lp - top
    delta_mean = delta.mean(-2)
    # torch's CPU expm1/log1p are scalar loops (~20× exp); compiled, the exp/log forms vectorise
    em1 = expm1_accurate(delta) if compiled else torch.expm1(delta)
    em1_mean = em1.mean(-2)
    scale = top.squeeze(-2).exp_()
    mean = em1_mean.add(1.0).mul_(scale)  # p̄_k, exactly 0 for unsupported classes
    if estimator == "mkl":
        gap = (log1p_accurate(em1_mean) if compiled else torch.log1p(em1_mean)).sub_(delta_mean).clamp_min_(0.0)  # NaN only where p̄_k = 0
        # p̄_k · d_k with 0 · (NaN or inf) = 0 (as 0 · ln 0 = 0); p̄_k > 0 with d_k = +inf stays +inf
        terms = gap.mul_(mean).nan_to_num_(nan=0.0, posinf=math.inf)
        return 2.0 * terms.sum(-1), mean
    cov = (em1 - em1_mean.unsqueeze(-2)).mul_(delta.sub_(delta_mean.unsqueeze(-2))).mean(-2).clamp_min_(0.0)
    zero = torch.zeros((), dtype=lp.dtype, device=lp.device)
    return torch.where(scale > 0, scale * cov, zero).sum(-1), mean


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
    """Dirichlet log-density ln Dir(π|α) = Σ_k (α_k − 1) ln π_k − ln B(α) ([EnD2] eq. 8).

    π on the boundary (ln π_k = −inf) gives −inf where α_k > 1 and +inf where α_k < 1 (density
    0 or unbounded); α_k = 1 with π_k = 0 contributes 0 (the term is absent), never NaN.
    """
    dtype = compute_dtype(alpha, log_pi)
    a, lpi = upcast(alpha, dtype), upcast(log_pi, dtype)
    lpi = torch.where(a == 1.0, torch.zeros((), dtype=dtype, device=lpi.device), lpi)  # before the product
    return ((a - 1.0) * lpi).sum(-1) - log_normalizer(a)


def entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Differential entropy H[Dir(α)] = ln B(α) + (α₀ − K) ψ(α₀) − Σ_k (α_k − 1) ψ(α_k)."""
    dtype = compute_dtype(alpha)
    a = upcast(alpha, dtype)
    a0 = a.sum(-1)
    k = a.shape[-1]
    return log_normalizer(a) + (a0 - k) * torch.digamma(a0) - ((a - 1.0) * torch.digamma(a)).sum(-1)
