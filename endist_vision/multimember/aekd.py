"""AE-KD: adaptive teacher weights in gradient space (Du et al. 2020; [LatentBE] App. B.4, eqs. 27–29).

The KD loss of teacher m at temperature τ, ``ℓ_m = τ² H[p_m^τ, q^τ]``, has the closed-form gradient
at the student logits ``z``

    g_m = ∂ℓ_m/∂z = τ (q^τ − p_m^τ)          (no backward pass through any network)

AE-KD finds the min-norm convex combination of these gradients with a cap C on every weight
([LatentBE] eqs. 28–29; for Σω = 1, ``Σ_m ω_m g_m = τ (q^τ − Σ_m ω_m p_m^τ)``):

    ω* = argmin_ω ½ ‖Σ_m ω_m g_m‖²   s.t.  Σ_m ω_m = 1,  0 ≤ ω_m ≤ C,

with the squared norm summed over the whole batch (one ω per batch), i.e. the M×M QP
``min ½ ωᵀ G ω`` with ``G_mn = Σ_b ⟨g_bm, g_bn⟩``.  C ∈ [1/M, 1]; C = 1/M forces uniform weights
(plain ensemble KD).  Solved by accelerated projected gradient (FISTA) with an exact bisection
projection onto the capped simplex, in float64.

The weighted loss (eq. 27) ``Σ_m ω_m τ² H[p_m^τ, q^τ]`` equals, up to a constant in z,
``τ² KL(Σ_m ω_m p_m^τ ‖ q^τ)``, computed with ``shared.losses.ensemble_kd_loss`` on the
ω-weighted tempered mixture (:func:`aekd_loss`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from shared.losses import ensemble_kd_loss


def project_capped_simplex(v: torch.Tensor, cap: float, iters: int = 100) -> torch.Tensor:
    """Euclidean projection of ``v [..., M]`` onto ``{ω : Σω = 1, 0 ≤ ω ≤ cap}`` (bisection on the shift λ).

    The projection is ``clip(v − λ, 0, cap)`` with λ chosen so the entries sum to 1; the sum is
    non-increasing in λ, so bisection over ``[min v − cap, max v]`` converges to machine precision.
    """
    m = v.shape[-1]
    if cap * m < 1 - 1e-12:
        raise ValueError(f"AE-KD cap C={cap} is infeasible for {m} teachers: need C >= 1/M = {1 / m:.4f}")
    lo = v.min(-1, keepdim=True).values - cap
    hi = v.max(-1, keepdim=True).values
    for _ in range(iters):
        mid = (lo + hi) / 2
        s = (v - mid).clamp(0.0, cap).sum(-1, keepdim=True)
        lo = torch.where(s > 1, mid, lo)
        hi = torch.where(s > 1, hi, mid)
    w = (v - (lo + hi) / 2).clamp(0.0, cap)
    # remove the last rounding error of the bisection on the free coordinates
    free = (w > 0) & (w < cap)
    deficit = 1 - w.sum(-1, keepdim=True)
    n_free = free.sum(-1, keepdim=True).clamp_min(1)
    return torch.where(free, w + deficit / n_free, w)


def solve_min_norm_qp(gram: torch.Tensor, cap: float, iters: int = 500) -> torch.Tensor:
    """``argmin_ω ½ ωᵀ G ω`` on the capped simplex (FISTA, step 1/λ_max(G)); ``gram`` is ``[M, M]`` PSD."""
    g = gram.double()
    m = g.shape[-1]
    lip = torch.linalg.eigvalsh(g).max().clamp_min(1e-30)
    w = project_capped_simplex(torch.full((m,), 1.0 / m, dtype=torch.float64), cap)
    y, t = w.clone(), 1.0
    for _ in range(iters):
        w_next = project_capped_simplex(y - (g @ y) / lip, cap)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = w_next + ((t - 1) / t_next) * (w_next - w)
        w, t = w_next, t_next
    return w


def teacher_gradients(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """``g_m = τ (q^τ − p_m^τ)`` for every teacher: student ``[B, K]``, teachers ``[B, M, K]`` → ``[B, M, K]``."""
    q = F.softmax(student_logits.detach().double() / temperature, -1).unsqueeze(-2)
    p = F.softmax(teacher_log_probs.detach().double() / temperature, -1)
    return temperature * (q - p)


def aekd_weights(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float = 1.0,
                 cap: float = 0.6) -> torch.Tensor:
    """Teacher weights ``ω [M]`` (Σω = 1, 0 ≤ ω ≤ C) for one batch, from the closed-form logit gradients."""
    if teacher_log_probs.dim() != 3 or student_logits.dim() != 2:
        raise ValueError(
            "aekd_weights expects student logits [B, K] and teacher log-probs [B, M, K], got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_log_probs.shape)}"
        )
    if not 0 < cap <= 1:
        raise ValueError(f"AE-KD cap C must be in (0, 1], got {cap}")
    g = teacher_gradients(student_logits, teacher_log_probs, temperature)
    gram = torch.einsum("bmk,bnk->mn", g, g)
    return solve_min_norm_qp(gram, cap).to(student_logits.dtype)


def aekd_loss(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float = 1.0,
              cap: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """AE-KD loss ([LatentBE] eq. 27) and the weights used: ``τ² KL(Σ_m ω_m p_m^τ ‖ q^τ)``, mean over the batch.

    ``student_logits`` may be ``[B, K]`` or multi-member ``[B, S, K]`` (ω from the member-mean logits,
    loss averaged over members).
    """
    single = student_logits if student_logits.dim() == 2 else student_logits.mean(1)
    w = aekd_weights(single, teacher_log_probs, temperature, cap)
    tempered = F.log_softmax(teacher_log_probs.float() / temperature, -1)
    mix = torch.logsumexp(tempered + w.float().clamp_min(1e-30).log().unsqueeze(-1), dim=-2)  # log Σ ω p^τ
    # ensemble_kd_loss tempers its target as softmax(log_probs / τ); feeding τ·log(mix) returns mix itself.
    target = (temperature * mix).unsqueeze(-2)
    if student_logits.dim() == 3:
        target = target.unsqueeze(1).expand(-1, student_logits.shape[1], -1, -1)
    loss = ensemble_kd_loss(student_logits, target, temperature=temperature)
    return loss.mean() if loss.dim() > 0 else loss, w
