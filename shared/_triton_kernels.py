"""The Triton kernel of the fused Proxy-Dirichlet loss (imported only by :mod:`shared._triton_proxy`).

One program per row n (a token position) walks the vocabulary in blocks of ``BLOCK`` classes, with the M
members of a block loaded as one ``[MP, BLOCK]`` tile (``MP`` = M rounded up to a power of two, padded
members masked out):

0. (only with a temperature T ≠ 1) the members' log-normalisers of ln p_m / T, one online log-sum-exp per
   member: the tempered members are log_softmax(ln p_m / T) without writing them;
1. the Proxy target's statistics, [Proxy] eq. 17, written without cancellation as in
   :func:`shared.dirichlet.member_divergence` (δ_mk = ln p_mk − max_n ln p_nk ≤ 0; expm1 and log1p by series
   near 0, so the result does not depend on the accuracy of the device's exp/log near 1):

       p̄_k = e^{max_k} (1 + (1/M) Σ_m expm1(δ_mk))                 (stored: one fp32 [N, K] scratch row)
       mkl:  D = 2 Σ_k p̄_k (log1p((1/M) Σ_m expm1(δ_mk)) − (1/M) Σ_m δ_mk)
       epkl: D = Σ_k e^{max_k} (1/M) Σ_m (expm1(δ_mk) − mean)(δ_mk − mean)
       β̂₀ = min((K − 1) / D, 1e10)  (D ≤ 1e-12 → the cap; D NaN/inf → 0),   β_k = p̄_k β̂₀ + offset_β

   and α₀ = Σ_k (e^{clamp(z_k)} + offset_α), β₀ = β̂₀ Σ_k p̄_k + K·offset_β;
2. value and gradient of the KL to that target, [Proxy] eq. 13–16 (β-only terms dropped)::

       reverse: value = lnΓ(α₀) − Σ lnΓ(α_k) + Σ (α_k − β_k) ψ(α_k) − (α₀ − β₀) ψ(α₀)
                ∂/∂z_k = ((α_k − β_k) ψ'(α_k) − (α₀ − β₀) ψ'(α₀)) · e^{z_k}
       forward: value = Σ lnΓ(α_k) − lnΓ(α₀) − Σ α_k ψ(β_k) + α₀ ψ(β₀)
                ∂/∂z_k = (ψ(α_k) − ψ(α₀) − ψ(β_k) + ψ(β₀)) · e^{z_k}

   with z clamped to [−30, 30] (zero gradient outside; a NaN logit stays NaN, as on the eager path), lnΓ/ψ/ψ' as
   in :func:`shared._special.gamma_terms`.

Everything is computed in float32 (half inputs are upcast on load). Memory traffic per row: the members are
read once (twice with T ≠ 1), the logits twice, the scratch row written and read once, the gradient written once.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _gamma_terms(x):
    """(lnΓ(x), ψ(x), ψ'(x)) for float32 0 < x ≤ 1e19: the recurrences to y = x + 6, then the asymptotic series
    (the formulas of :func:`shared._special.gamma_terms`)."""
    inv = x * 0.0
    inv2 = x * 0.0
    log_prod = x * 0.0
    for j in tl.static_range(3):
        lo = x + 2.0 * j
        hi = lo + 1.0
        log_prod += tl.log(lo * hi)
        rlo = 1.0 / lo
        rhi = 1.0 / hi
        inv += rlo + rhi
        inv2 += rlo * rlo + rhi * rhi
    y = x + 6.0
    log_y = tl.log(y)
    r = 1.0 / y
    r2 = r * r
    lg = ((r2 * (1.0 / 1260.0) - 1.0 / 360.0) * r2 + 1.0 / 12.0) * r
    lg += (x + 5.5) * log_y - x - (6.0 - 0.9189385332046727) - log_prod
    dg = log_y - (0.5 * r + (1.0 / 12.0 - (1.0 / 120.0 - r2 * (1.0 / 252.0)) * r2) * r2) - inv
    tg = r + r2 * (0.5 + r * (1.0 / 6.0 + r2 * (r2 * (1.0 / 42.0) - 1.0 / 30.0))) + inv2
    return lg, dg, tg


@triton.jit
def _expm1_nonpositive(d):
    """eᵈ − 1 for d ≤ 0 (−inf gives −1) without cancellation and without relying on how accurate the device's
    exp is near 1: the Taylor series d(1 + d/2(1 + d/3(… (1 + d/10)))) for d ≥ −½ (the first term left out,
    d¹¹/11!, is < 3e-11 relative there), else eᵈ − 1 (eᵈ ≤ 0.61: no cancellation)."""
    small = d >= -0.5
    ds = tl.where(small, d, 0.0)
    p = ds * 0.0 + 1.0
    for i in tl.static_range(9):
        p = 1.0 + ds * p * (1.0 / (10 - i))  # constant reciprocals: no divisions
    return tl.where(small, ds * p, tl.exp(d) - 1.0)


@triton.jit
def _log1p_nonpositive(y):
    """ln(1 + y) for −1 ≤ y ≤ 0 (−1 gives −inf) without relying on how accurate the device's log is near 1:
    2·atanh(t) = 2t(1 + t²/3 + … + t¹⁶/17), t = y / (2 + y), for y ≥ −½ (|t| ≤ ⅓: the first term left out is
    < 2e-10 relative), else ln(1 + y) (≤ −0.69: no cancellation)."""
    small = y >= -0.5
    ys = tl.where(small, y, 0.0)
    t = ys / (2.0 + ys)
    t2 = t * t
    p = t * 0.0 + 1.0 / 17.0
    for i in tl.static_range(8):
        p = p * t2 + 1.0 / (15 - 2 * i)
    return tl.where(small, 2.0 * t * p, tl.log(1.0 + y))


@triton.jit
def _clamp_nan(x, lo, hi):
    """min(max(x, lo), hi) with NaN kept (``tl.maximum``/``tl.minimum`` drop it, as max.f32 does): a NaN logit
    must give a NaN loss, as on the eager path, not a silently clamped one."""
    return tl.where(x != x, x, tl.minimum(tl.maximum(x, lo), hi))


@triton.jit
def proxy_kl_kernel(
    z_ptr, lp_ptr, val_ptr, grad_ptr, pbar_ptr, prec_ptr,
    K, inv_t, offset, target_offset,
    M: tl.constexpr, MP: tl.constexpr, BLOCK: tl.constexpr,
    REVERSE: tl.constexpr, MKL: tl.constexpr, TEMPERED: tl.constexpr, NEED_GRAD: tl.constexpr,
):
    """Row ``program_id(0)`` of z ``[N, K]`` and ln p ``[N, M, K]`` (contiguous) → value, precision β̂₀,
    ∂value/∂(z/T) (if NEED_GRAD); ``pbar_ptr``: an fp32 ``[N, K]`` scratch (may be the gradient buffer)."""
    row = tl.program_id(0).to(tl.int64)
    z_row = z_ptr + row * K
    lp_row = lp_ptr + row * M * K
    pb_row = pbar_ptr + row * K
    members = tl.arange(0, MP)
    member_ok = members < M
    cols = tl.arange(0, BLOCK)
    lo = -30.0
    cap = 30.0

    # pass 0: log-normalisers of the tempered members (online log-sum-exp over the vocabulary)
    if TEMPERED:
        run_max = tl.full([MP], -1e30, tl.float32)
        run_sum = tl.zeros([MP], tl.float32)
        for s in range(0, K, BLOCK):
            offs = s + cols
            ok = member_ok[:, None] & (offs < K)[None, :]
            t = tl.load(lp_row + members[:, None] * K + offs[None, :], mask=ok, other=float("-inf")).to(tl.float32) * inv_t
            new_max = tl.maximum(run_max, tl.max(t, axis=1))
            run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(t - new_max[:, None]), axis=1)
            run_max = new_max
        lse = tl.where(member_ok, run_max + tl.log(run_sum), 0.0)
    else:
        lse = tl.zeros([MP], tl.float32)

    # pass 1: p̄ (stored), the members' divergence, Σ p̄, α₀
    a0_acc = tl.zeros([BLOCK], tl.float32)
    div_acc = tl.zeros([BLOCK], tl.float32)
    pbar_acc = tl.zeros([BLOCK], tl.float32)
    for s in range(0, K, BLOCK):
        offs = s + cols
        col_ok = offs < K
        ok = member_ok[:, None] & col_ok[None, :]
        lp = tl.load(lp_row + members[:, None] * K + offs[None, :], mask=ok, other=float("-inf")).to(tl.float32)
        if TEMPERED:
            lp = lp * inv_t - lse[:, None]
        top = tl.maximum(tl.max(tl.where(ok, lp, float("-inf")), axis=0), -1e30)
        delta = lp - top[None, :]
        em1 = tl.where(ok, _expm1_nonpositive(delta), 0.0)
        em1_mean = tl.sum(em1, axis=0) * (1.0 / M)
        delta_mean = tl.sum(tl.where(ok, delta, 0.0), axis=0) * (1.0 / M)
        scale = tl.exp(top)
        pbar = (em1_mean + 1.0) * scale
        if MKL:
            gap = tl.maximum(_log1p_nonpositive(em1_mean) - delta_mean, 0.0)
            term = tl.where(pbar > 0.0, gap * pbar, 0.0)  # 0 · ln 0 = 0
        else:
            prod = (em1 - em1_mean[None, :]) * (delta - delta_mean[None, :])
            cov = tl.sum(tl.where(ok, prod, 0.0), axis=0) * (1.0 / M)
            cov = tl.where(cov != cov, float("inf"), tl.maximum(cov, 0.0))  # −inf − (−inf): infinite disagreement
            term = tl.where(scale > 0.0, scale * cov, 0.0)
        div_acc += tl.where(col_ok, term, 0.0)
        pbar_acc += tl.where(col_ok, pbar, 0.0)
        tl.store(pb_row + offs, pbar, mask=col_ok)
        zc = tl.load(z_row + offs, mask=col_ok, other=0.0).to(tl.float32) * inv_t
        a0_acc += tl.where(col_ok, tl.exp(_clamp_nan(zc, lo, cap)) + offset, 0.0)

    div = tl.sum(div_acc, axis=0)
    if MKL:
        div = 2.0 * div
    div = tl.where(div != div, float("inf"), div)
    prec = tl.minimum(tl.where(div > 1e-12, (K - 1) / div, float("inf")), 1e10)
    b0 = prec * tl.sum(pbar_acc, axis=0) + K * target_offset
    a0 = tl.sum(a0_acc, axis=0)
    lg0, dg0, tg0 = _gamma_terms(a0)
    dgb0 = dg0
    if not REVERSE:
        _lgb0, dgb0, _tgb0 = _gamma_terms(b0)  # distinct names: a name reassigned in the loop below must keep its type
    tl.debug_barrier()  # pass 1's scratch stores are visible to every thread of the program

    # pass 2: value and gradient
    acc = tl.zeros([BLOCK], tl.float32)
    for s in range(0, K, BLOCK):
        offs = s + cols
        col_ok = offs < K
        zc = tl.load(z_row + offs, mask=col_ok, other=0.0).to(tl.float32) * inv_t
        ez = tl.exp(_clamp_nan(zc, lo, cap))
        a = ez + offset
        beta = tl.load(pb_row + offs, mask=col_ok, other=0.0) * prec + target_offset
        if NEED_GRAD:  # the gradient overwrites p̄ in place: every thread's load (copies of a narrow block's
            tl.debug_barrier()  # layout in other warps included) comes before any store
        lg, dg, tg = _gamma_terms(a)
        if REVERSE:
            diff = a - beta
            acc += tl.where(col_ok, diff * dg - lg, 0.0)
            g = diff * tg - (a0 - b0) * tg0
        else:
            _lgb, dgb, _tgb = _gamma_terms(beta)
            acc += tl.where(col_ok, lg - a * dgb, 0.0)
            g = dg - dg0 - dgb + dgb0
        if NEED_GRAD:
            inside = (zc >= lo) & (zc <= cap)
            tl.store(grad_ptr + row * K + offs, tl.where(inside, g * ez, 0.0), mask=col_ok)

    val = tl.sum(acc, axis=0)
    if REVERSE:
        val = val + lg0 - (a0 - b0) * dg0
    else:
        val = val - lg0 + a0 * dgb0
    tl.store(val_ptr + row, val)
    tl.store(prec_ptr + row, prec)


def launch(z, lp, val, grad, scratch, prec, k: int, m: int, inv_t: float, offset: float, target_offset: float,
           reverse: bool, mkl: bool, tempered: bool, block: int, members_padded: int, num_warps: int) -> None:
    """One program per row (``val.shape[0]`` rows)."""
    proxy_kl_kernel[(val.shape[0],)](
        z, lp, val, grad if grad is not None else scratch, scratch, prec,
        k, inv_t, offset, target_offset,
        M=m, MP=members_padded, BLOCK=block, REVERSE=reverse, MKL=mkl, TEMPERED=tempered,
        NEED_GRAD=grad is not None, num_warps=num_warps,
    )
