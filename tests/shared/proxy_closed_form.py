"""The Proxy-Dirichlet loss as textbook float64 formulas: the reference the fused paths are tested against
(``test_compiled_loss.py``: torch.compile on the CPU; ``triton_interpreted.py``: the Triton kernel)."""

from __future__ import annotations

import torch

from shared.dirichlet import kl_divergence, log_normalizer


def float64_proxy_loss(z: torch.Tensor, lp: torch.Tensor, temperature: float = 1.0, direction: str = "reverse",
                       model_offset: float = 1.0, estimator: str = "mkl") -> torch.Tensor:
    """[Proxy] eq. 17 target (mkl: β̂₀ = (K−1)/(2·(1/M) Σ_m KL(p̄‖p_m)); epkl: (K−1)/((1/M²) Σ_{m,n} KL(p_m‖p_n))),
    β = p̄ β̂₀ + 1, α = e^{z/T} + model_offset, the full KL (eq. 13/14, ``kl_divergence``) minus its β-only terms,
    divided by max(β̂₀, 1). Members tempered as log_softmax(ln p / T). For smooth inputs (no −inf)."""
    z, lp = z.double(), torch.log_softmax(lp.double() / temperature, -1)
    k = z.shape[-1]
    p = lp.exp()
    mean = p.mean(-2)
    if estimator == "mkl":
        divergence = 2 * (mean.unsqueeze(-2) * (mean.log().unsqueeze(-2) - lp)).sum(-1).mean(-1)
    else:
        divergence = (p.unsqueeze(-2) * (lp.unsqueeze(-2) - lp.unsqueeze(-3))).sum(-1).mean((-1, -2))
    precision = (k - 1) / divergence
    beta = mean * precision.unsqueeze(-1) + 1.0
    alpha = torch.exp(z / temperature) + model_offset
    if direction == "reverse":
        value = kl_divergence(alpha, beta) - log_normalizer(beta)
    else:
        b0 = beta.sum(-1)
        value = kl_divergence(beta, alpha) + log_normalizer(beta) - (beta * torch.digamma(beta)).sum(-1) + b0 * torch.digamma(b0)
    return value / precision.clamp_min(1.0)
