"""AE-KD: adaptive teacher weights in gradient space (Du et al. 2020; [LatentBE] App. B.4, eqs. 27–29).

The KD loss of teacher m at temperature τ, ``ℓ_m = τ² H[p_m^τ, q^τ]``, has the closed-form gradient
at the student logits ``z``

    g_m = ∂ℓ_m/∂z = τ (q^τ − p_m^τ)          (no backward pass through any network)

AE-KD finds the min-norm convex combination of these gradients with a cap C on every weight
([LatentBE] eqs. 28–29; for Σω = 1, ``Σ_m ω_m g_m = τ (q^τ − Σ_m ω_m p_m^τ)``):

    ω* = argmin_ω ½ ‖Σ_m ω_m g_m‖²   s.t.  Σ_m ω_m = 1,  0 ≤ ω_m ≤ C,

with the squared norm summed over the whole batch (one ω per batch), i.e. the M×M QP
``min ½ ωᵀ G ω`` with ``G_mn = Σ_b ⟨g_bm, g_bn⟩``.  C ∈ [1/M, 1]; C = 1/M forces uniform weights
(plain ensemble KD).  Solved by accelerated projected gradient (FISTA) with an exact sort-based
projection onto the capped simplex, polished by a KKT solve on the active set, in float64.

The weighted loss (eq. 27) ``Σ_m ω_m τ² H[p_m^τ, q^τ]`` equals, up to a constant in z,
``τ² KL(Σ_m ω_m p_m^τ ‖ q^τ)``, computed with ``shared.losses.ensemble_kd_loss`` on the
ω-weighted tempered mixture (:func:`aekd_loss`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from shared.losses import ensemble_kd_loss


def project_capped_simplex(v: torch.Tensor, cap: float) -> torch.Tensor:
    """Exact Euclidean projection of ``v [..., M]`` onto ``{ω : Σω = 1, 0 ≤ ω ≤ cap}``.

    The projection is ``clip(v − λ, 0, cap)`` where ``f(λ) = Σ_i clip(v_i − λ, 0, cap) = 1``.  ``f`` is
    piecewise linear and non-increasing with breakpoints ``{v_i, v_i − cap}``; it is evaluated at all
    2M breakpoints (vectorised, O(M²)) and λ is interpolated on the segment where it crosses 1.
    """
    m = v.shape[-1]
    if cap * m < 1 - 1e-12:
        raise ValueError(f"AE-KD cap C={cap} is infeasible for {m} teachers: need C >= 1/M = {1 / m:.4f}")
    bp = torch.cat([v, v - cap], -1).sort(-1).values  # [..., 2M], f(bp_0) = M·C ≥ 1, f(bp_last) = 0
    f = (v.unsqueeze(-2) - bp.unsqueeze(-1)).clamp(0.0, cap).sum(-1)  # [..., 2M], non-increasing
    j = ((f >= 1).sum(-1, keepdim=True) - 1).clamp(0, 2 * m - 2)  # last breakpoint with f ≥ 1
    lo, hi = bp.gather(-1, j), bp.gather(-1, j + 1)
    f_lo, f_hi = f.gather(-1, j), f.gather(-1, j + 1)
    slope = (f_lo - f_hi).clamp_min(torch.finfo(v.dtype).tiny)
    lam = torch.where(f_lo > f_hi, lo + (f_lo - 1) / slope * (hi - lo), lo)
    return (v - lam).clamp(0.0, cap)


def _project_np(v: np.ndarray, cap: float) -> np.ndarray:
    """NumPy twin of :func:`project_capped_simplex` for one vector (used inside the QP loop)."""
    m = v.shape[0]
    bp = np.sort(np.concatenate([v, v - cap]))
    f = np.clip(v[None, :] - bp[:, None], 0.0, cap).sum(1)
    j = min(max(int((f >= 1).sum()) - 1, 0), 2 * m - 2)
    lo, hi, f_lo, f_hi = bp[j], bp[j + 1], f[j], f[j + 1]
    lam = lo + (f_lo - 1) / (f_lo - f_hi) * (hi - lo) if f_lo > f_hi else lo
    return np.clip(v - lam, 0.0, cap)


def _polish(gram: np.ndarray, w: np.ndarray, cap: float, tol: float = 1e-9) -> np.ndarray:
    """Solve the KKT system on the active set identified by ``w`` (exact when the set is right)."""
    upper = w >= cap - tol
    free = ~upper & (w > tol)
    if not free.any():
        return w
    rhs_sum = 1.0 - cap * upper.sum()
    nf = int(free.sum())
    kkt = np.zeros((nf + 1, nf + 1))
    kkt[:nf, :nf] = gram[np.ix_(free, free)]
    kkt[:nf, nf] = kkt[nf, :nf] = 1.0
    rhs = np.concatenate([-cap * gram[np.ix_(free, upper)].sum(1), [rhs_sum]])
    try:
        sol = np.linalg.solve(kkt, rhs)
    except np.linalg.LinAlgError:
        return w
    cand = np.where(upper, cap, 0.0)
    cand[free] = sol[:nf]
    feasible = cand.min() >= -1e-12 and cand.max() <= cap + 1e-12
    if feasible and cand @ gram @ cand <= w @ gram @ w + 1e-15:
        return np.clip(cand, 0.0, cap)
    return w


def solve_min_norm_qp(gram: torch.Tensor, cap: float, iters: int = 1000, tol: float = 1e-13) -> torch.Tensor:
    """``argmin_ω ½ ωᵀ G ω`` on the capped simplex; ``gram`` is ``[M, M]`` PSD.

    Accelerated projected gradient (FISTA, step 1/λ_max(G), exact projection) in float64 NumPy,
    stopped when an iterate moves less than ``tol``, then polished by solving the KKT equations on
    the identified active set.  M is the number of teachers, so one solve costs well under a
    millisecond to a few milliseconds.
    """
    g = gram.detach().double().cpu().numpy()
    m = g.shape[0]
    if cap * m < 1 - 1e-12:
        raise ValueError(f"AE-KD cap C={cap} is infeasible for {m} teachers: need C >= 1/M = {1 / m:.4f}")
    proj = lambda x: _project_np(x, cap)  # noqa: E731
    lip = max(float(np.linalg.eigvalsh(g).max()), 1e-300)
    w = proj(np.full(m, 1.0 / m))
    y, t = w.copy(), 1.0
    for _ in range(iters):
        w_next = proj(y - (g @ y) / lip)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = w_next + ((t - 1) / t_next) * (w_next - w)
        done = np.abs(w_next - w).max() < tol
        w, t = w_next, t_next
        if done:
            break
    return torch.from_numpy(_polish(g, w, cap)).to(gram.device)


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
