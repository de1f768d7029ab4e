"""Distillation losses as pure functions.

Shapes: student logits ``[..., K]``; teacher log-probabilities ``[..., M, K]``
(M members). Every loss takes an optional ``mask`` (broadcast over the leading
dims) and ``reduction`` in ``"none" | "sum" | "mean"``. Half-precision inputs are
computed in float32 and the loss is returned in float32 (float64 inputs stay float64).

Conventions shared by every loss here:

- **Masked positions** (``mask`` False) contribute exactly 0 to the value and exactly 0
  to the gradient whatever they hold (±1e4, −inf, NaN): their inputs are replaced by
  harmless constants (logits 0, uniform teachers) *before* anything is computed
  (``torch.where`` first — a NaN in the unused branch of a later ``where`` would still
  poison the gradient).
- **No elements** (empty batch, all-false mask): ``"mean"`` and ``"sum"`` are exactly 0,
  still attached to the graph, so ``.backward()`` works and gives zero gradients.
- **Finite values and gradients** for logits of any size (±1e4) and one-hot (−inf)
  or identical teachers, with offsets 0 or 1: log-concentrations are clamped to
  ``shared._tensor.MIN_LOG_ALPHA``/``MAX_LOG_ALPHA`` (zero gradient beyond), the Proxy
  precision is capped and β floored (``shared.dirichlet.MAX_PRECISION``,
  ``MIN_CONCENTRATION``). The one exception is the *gradient of a half-precision input*:
  it is returned in the input's dtype and overflows to ±inf where it exceeds that
  dtype's range (fp16: 65504; e.g. the Dirichlet losses at logits near the clamp),
  which AMP's ``GradScaler`` detects and skips.
- ``temperature`` must be finite and > 0, offsets finite and ≥ 0 (``ValueError``).
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Tuple

import torch

from shared._tensor import (
    MAX_LOG_ALPHA,
    MIN_LOG_ALPHA,
    check_ensemble_shapes,
    check_mask,
    check_positive_finite,
    check_reduction,
    compute_dtype,
    mask_rows,
    reduce_loss,
    upcast,
    xlogy_safe,
)
from shared._compiled import compiled_kl_to_target, compiled_proxy_kl, use_compiled
from shared._triton_proxy import triton_proxy_kl, use_triton
from shared._special import gamma_terms
from shared.dirichlet import ProxyTarget, log_normalizer, proxy_target
from shared.uncertainty import alphas_from_logits

#: Rows per chunk are chosen so one chunk holds about this many elements: cache-sized on the CPU ...
CHUNK_ELEMENTS = 1 << 18
#: ... and on a GPU large enough that kernel launches do not dominate (a chunk's ~7 float32
#: temporaries are 0.7 [N, V] at N = 1024, V = 40k; 10 chunks).
CUDA_CHUNK_ELEMENTS = 1 << 22
#: Use the joint float32 lnΓ/ψ/ψ' evaluation of :mod:`shared._special` (float64 always uses torch's).
USE_FAST_SPECIAL = True


def _tempered_log_probs(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """log_softmax(ln p / T): members heated up as in Hinton et al. ([EnD2] §3.1)."""
    if temperature == 1.0:
        return log_probs
    return torch.log_softmax(log_probs / temperature, dim=-1)


def ensemble_kd_loss(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    temperature: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Ensemble distillation (EnD), [EnD2] eq. 5 with temperature (Hinton et al. 2015)::

        L = T² · KL(p̄_T ‖ q_T),   p̄_T = (1/M) Σ_m softmax(ln p_m / T),   q_T = softmax(z / T)
    """
    check_ensemble_shapes(student_logits, teacher_log_probs)
    check_reduction(reduction)
    temperature = check_positive_finite(temperature, "temperature")
    mask = check_mask(mask, student_logits.shape[:-1])
    dtype = compute_dtype(student_logits, teacher_log_probs)
    z, lt = _masked_inputs(student_logits, teacher_log_probs, mask, dtype)
    log_q = torch.log_softmax(z / temperature, dim=-1)
    lt = _tempered_log_probs(lt, temperature)
    log_mean = torch.logsumexp(lt, dim=-2) - math.log(lt.shape[-2])
    mean = log_mean.exp()
    kl = (xlogy_safe(mean, log_mean) - xlogy_safe(mean, log_q)).sum(-1)
    return reduce_loss(kl * temperature**2, reduction, mask)


def dirichlet_nll_loss(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    temperature: float = 1.0,
    smoothing: float = 1e-4,
    model_offset: float = 0.0,
    mask: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    parametrization: str = "exp",
    clip_precision: Optional[float] = None,
    topk: int = 0,
) -> torch.Tensor:
    """EnD² Dirichlet negative log-likelihood ([EnD2] eq. 8 and 11)::

        L = −(1/M) Σ_m ln Dir(π_m | α)
          = Σ_k lnΓ(α_k) − lnΓ(α₀) − Σ_k (α_k − 1) · (1/M) Σ_m ln π_mk

    with α = exp(z / T) + model_offset (the model "heated up", [EnD2] §3.1), members
    tempered π_m = softmax(ln p_m / T), and central smoothing ([EnD2] eq. 12)
    π_m ← (1 − γ) π_m + γ / K, computed in log space so one-hot teachers stay finite.
    With ``smoothing=0`` a teacher probability of 0 is read as the smallest normal float
    (ln π ≥ ln 1.2e-38 ≈ −87 in float32), so the loss stays finite (the exact value, with
    ln 0, is infinite).

    ``parametrization="softplus"`` uses α = softplus(z / T) + model_offset, and ``clip_precision=A``
    caps α₀ at A (:func:`shared.uncertainty.alphas_from_logits`). ``topk=k`` (0 < k < K) merges
    every class outside the teachers' top-k of p̄ into one ([Proxy] §3.2-style): the members'
    π_rest = Σ_rest π_mk and the student's α_rest = Σ_rest α_k (the aggregation property of the
    Dirichlet makes the merged density the exact marginal), a Dirichlet over k + 1 classes.
    """
    check_ensemble_shapes(student_logits, teacher_log_probs)
    check_reduction(reduction)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    temperature = check_positive_finite(temperature, "temperature")
    model_offset = check_positive_finite(model_offset, "model_offset", allow_zero=True)
    mask = check_mask(mask, student_logits.shape[:-1])
    dtype = compute_dtype(student_logits, teacher_log_probs)
    k = student_logits.shape[-1]
    z, lt = _masked_inputs(student_logits, teacher_log_probs, mask, dtype)
    topk = check_topk(topk, k)
    alpha = alphas_from_logits(z / temperature, offset=model_offset, parametrization=parametrization, clip_precision=clip_precision)
    with torch.no_grad():
        lt = _tempered_log_probs(lt, temperature)
        if smoothing > 0.0:  # ln π ≥ ln(γ/K): finite
            lt = torch.logaddexp(lt + math.log1p(-smoothing), torch.full((), math.log(smoothing / k), dtype=dtype, device=lt.device))
        if topk:
            top = topk_classes(torch.logsumexp(lt, dim=-2), topk)
            lt = merge_log_classes(lt, top.unsqueeze(-2).expand(*lt.shape[:-1], topk))
        if smoothing == 0.0:  # zero probabilities count as the smallest normal float (ln π ≥ −87 in float32, −708 in float64)
            lt = lt.clamp_min(math.log(torch.finfo(dtype).tiny))  # so the density is finite, not inf − inf = NaN
        mean_log_pi = lt.mean(-2)
    if topk:
        alpha = merge_classes(alpha, top)
    nll = log_normalizer(alpha) - ((alpha - 1.0) * mean_log_pi).sum(-1)
    return reduce_loss(nll, reduction, mask)


def check_topk(topk: int, k: int) -> int:
    """``topk`` as an int: 0 (no merging) or 1 ≤ topk < K (ValueError otherwise)."""
    if isinstance(topk, bool) or int(topk) != topk or not (topk == 0 or 1 <= topk < k):
        raise ValueError(f"topk must be 0 (all classes) or an integer in [1, K-1] = [1, {k - 1}], got {topk!r}")
    return int(topk)


def topk_classes(scores: torch.Tensor, topk: int) -> torch.Tensor:
    """Indices ``[..., topk]`` of the ``topk`` largest ``scores`` ``[..., K]`` (the teachers' mean)."""
    return scores.topk(topk, dim=-1, sorted=False).indices


def _rest_mask(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape, dtype=torch.bool, device=x.device).scatter_(-1, index, False)


def merge_classes(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[..., K]`` → ``[..., k + 1]``: the classes ``index`` ``[..., k]``, then the sum of all the others.

    Differentiable in ``x`` (concentrations: Σ_rest α is the concentration of the merged class).
    """
    rest = torch.where(_rest_mask(x, index), x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(-1, keepdim=True)
    return torch.cat([x.gather(-1, index), rest], dim=-1)


def merge_log_classes(log_x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Log-space :func:`merge_classes`: ``ln x`` of the classes ``index``, then ln Σ_rest x (logsumexp)."""
    rest = torch.where(_rest_mask(log_x, index), log_x, torch.full((), -math.inf, dtype=log_x.dtype, device=log_x.device))
    return torch.cat([log_x.gather(-1, index), torch.logsumexp(rest, dim=-1, keepdim=True)], dim=-1)


def _masked_inputs(
    student: torch.Tensor, teacher: torch.Tensor, mask: Optional[torch.Tensor], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student logits and teacher log-probs in ``dtype``, masked rows replaced by logits 0 and a uniform
    teacher (ln 1/K) before anything is computed (see the module docstring)."""
    k = teacher.shape[-1]
    z = mask_rows(upcast(student, dtype), mask, 0.0, row_dims=student.dim() - mask.dim() if mask is not None else 1)
    lt = mask_rows(upcast(teacher, dtype), mask, -math.log(k) if k else 0.0, row_dims=teacher.dim() - mask.dim() if mask is not None else 2)
    return z, lt


def _gamma_terms(a: torch.Tensor, with_trigamma: bool):
    """lnΓ, ψ, ψ' of a chunk: on the CPU the fast joint float32 evaluation (torch's CPU kernels are scalar
    loops), else torch's functions (float64, and any dtype on a GPU, where each is one elementwise kernel)."""
    if a.dtype == torch.float32 and USE_FAST_SPECIAL and not a.is_cuda:
        return gamma_terms(a, with_trigamma)
    return torch.lgamma(a), torch.digamma(a), torch.polygamma(1, a) if with_trigamma else None


class _DirichletKLToTarget(torch.autograd.Function):
    """KL between Dir(α), α = exp(z) + offset, and a fixed target Dir(β), β-only terms dropped.

    reverse (KL[Dir(α)‖Dir(β)], [Proxy] eq. 14)::

        value = lnΓ(α₀) − Σ lnΓ(α_k) + Σ (α_k − β_k) ψ(α_k) − (α₀ − β₀) ψ(α₀)
        ∂/∂z_k = ((α_k − β_k) ψ'(α_k) − (α₀ − β₀) ψ'(α₀)) · e^{z_k}      ([Proxy] eq. 16)

    forward (KL[Dir(β)‖Dir(α)], [Proxy] eq. 13)::

        value = Σ lnΓ(α_k) − lnΓ(α₀) − Σ α_k ψ(β_k) + α₀ ψ(β₀)
        ∂/∂z_k = (ψ(α_k) − ψ(α₀) − ψ(β_k) + ψ(β₀)) · e^{z_k}             ([Proxy] eq. 15)

    On the CPU in float32 at ≥ ``shared._compiled.MIN_ELEMENTS`` logits, value and gradient come
    from one ``torch.compile``-fused pass (:mod:`shared._compiled`, same formulas). Otherwise one
    pass over cache-sized row chunks computes the value and, when z requires a
    gradient, the analytic gradient into one preallocated [N, K] buffer that the backward
    scales by the incoming gradient — so α is never materialised at full size and nothing
    is recomputed (first-order only: no double backward).
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, beta: torch.Tensor, offset: float, reverse: bool, from_alpha: bool = False) -> torch.Tensor:  # type: ignore[override]
        n, k = z.shape
        need_grad = ctx.needs_input_grad[0]
        if not from_alpha and use_compiled(z):  # one fused pass (shared._compiled)
            fused = compiled_kl_to_target(z, beta.to(z.dtype), offset, reverse, need_grad)
            if fused is not None:
                ctx.grad = fused[1]
                return fused[0]
        lo, cap = MIN_LOG_ALPHA[z.dtype], MAX_LOG_ALPHA[z.dtype]
        rows = max(1, (CUDA_CHUNK_ELEMENTS if z.is_cuda else CHUNK_ELEMENTS) // max(k, 1))
        out = z.new_empty(n)
        grad = torch.empty_like(z) if need_grad else None
        for s in range(0, n, rows):
            zc, bc = z[s : s + rows], beta[s : s + rows]
            if from_alpha:  # the input is α itself: the gradient is ∂/∂α
                a = zc + offset if offset else zc
            else:
                ez = zc.clamp(lo, cap).exp_()
                a = ez + offset
            a0 = a.sum(-1, keepdim=True)
            b0 = bc.sum(-1, keepdim=True)
            lg, dg, tg = _gamma_terms(a, with_trigamma=need_grad and reverse)
            if reverse:
                diff = a - bc
                val = torch.lgamma(a0) - lg.sum(-1, keepdim=True) + (diff * dg).sum(-1, keepdim=True)
                val -= (a0 - b0) * torch.digamma(a0)
                if need_grad:
                    g = diff.mul_(tg).sub_((a0 - b0) * torch.polygamma(1, a0))
            else:
                dg_b = torch.digamma(bc)
                val = lg.sum(-1, keepdim=True) - torch.lgamma(a0) - (a * dg_b).sum(-1, keepdim=True)
                val += a0 * torch.digamma(b0)
                if need_grad:
                    g = dg.sub_(torch.digamma(a0)).sub_(dg_b).add_(torch.digamma(b0))
            out[s : s + rows] = val.squeeze(-1)
            if need_grad and from_alpha:
                grad[s : s + rows] = g
            elif need_grad:
                g.mul_(ez)
                # clamped logits get zero gradient; on a GPU without the host sync of a data-dependent `if`
                if zc.is_cuda:
                    g.masked_fill_((zc > cap) | (zc < lo), 0.0)
                else:
                    zmin, zmax = torch.aminmax(zc)
                    if zmax > cap or zmin < lo:
                        g.masked_fill_((zc > cap) | (zc < lo), 0.0)
                grad[s : s + rows] = g
        ctx.grad = grad
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        return ctx.grad * grad_out.unsqueeze(-1), None, None, None, None


def dropped_constant(beta: torch.Tensor, direction: str = "reverse") -> torch.Tensor:
    """The β-only terms :func:`proxy_dirichlet_loss` leaves out (before normalisation).

    - reverse: Σ lnΓ(β_k) − lnΓ(β₀)
    - forward: lnΓ(β₀) − Σ lnΓ(β_k) + Σ β_k ψ(β_k) − β₀ ψ(β₀)

    so that ``unnormalised loss + dropped_constant(β) = shared.dirichlet.kl_divergence``.
    """
    b = beta
    b0 = b.sum(-1)
    if direction == "reverse":
        return log_normalizer(b)
    return -log_normalizer(b) + (b * torch.digamma(b)).sum(-1) - b0 * torch.digamma(b0)


def proxy_dirichlet_loss(
    student_logits: torch.Tensor,
    teacher_log_probs: Optional[torch.Tensor],
    direction: str = "reverse",
    model_offset: float = 1.0,
    target_offset: float = 1.0,
    estimator: str = "mkl",
    normalize: bool = True,
    temperature: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    target: Optional[ProxyTarget] = None,
    parametrization: str = "exp",
    clip_precision: Optional[float] = None,
    topk: int = 0,
) -> torch.Tensor:
    """Proxy-Dirichlet distillation loss ([Proxy] §3, eq. 13–17): the loss of
    :func:`proxy_dirichlet_loss_and_precision` (all arguments and paths documented there)."""
    return proxy_dirichlet_loss_and_precision(
        student_logits, teacher_log_probs, direction, model_offset, target_offset, estimator, normalize, temperature,
        mask, reduction, target, parametrization, clip_precision, topk,
    )[0]


def proxy_dirichlet_loss_and_precision(
    student_logits: torch.Tensor,
    teacher_log_probs: Optional[torch.Tensor],
    direction: str = "reverse",
    model_offset: float = 1.0,
    target_offset: float = 1.0,
    estimator: str = "mkl",
    normalize: bool = True,
    temperature: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    target: Optional[ProxyTarget] = None,
    parametrization: str = "exp",
    clip_precision: Optional[float] = None,
    topk: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Proxy-Dirichlet distillation ([Proxy] §3, eq. 13–17): (loss, β̂₀ ``[...]``, the target precision the loss used,
    detached; 1 at masked positions). Callers that log β̂₀ (the fairseq criterions) get it here without computing the
    target separately, so the fused paths below still apply.

    The target β = p̄·β̂₀ + target_offset comes from :func:`shared.dirichlet.proxy_target`
    (computed once, without gradient; pass ``target=`` to reuse one you already have).
    The student is Dir(α), α = exp(z / T) + model_offset.

    - ``direction="reverse"`` (the method of [Proxy]): KL[Dir(α)‖Dir(β)]
    - ``direction="forward"``: KL[Dir(β)‖Dir(α)]

    **Dropped constants**: the terms that depend on β only (see :func:`dropped_constant`)
    are not computed, so the value is the KL minus a per-position constant; the
    gradient with respect to the logits equals that of the full closed-form KL
    exactly. ``normalize=True`` divides each position's loss by max(β̂₀, 1), the
    target precision without offset (β̂₀ is the weight of the reconstruction term in
    [Proxy] eq. 18, so the normalised loss is on the scale of a cross-entropy; the floor
    keeps flat targets, β̂₀ → 0, from blowing up).

    **Fused paths** (the defaults, teachers given): on CUDA one Triton kernel computes target, value and
    gradient (:mod:`shared._triton_proxy`; ``ENDIST_TRITON_LOSS=0`` turns it off); on a large float32 CPU batch
    one ``torch.compile``-d pass per row chunk (:mod:`shared._compiled`; ``ENDIST_COMPILED_LOSS=0``). Both give
    first-order gradients only.

    Options (the defaults take the fused path above, α never materialised):

    - ``parametrization="softplus"``: α = softplus(z / T) + model_offset;
    - ``clip_precision=A``: the student's α₀ capped at A in log space, mean kept
      (:func:`shared.uncertainty.alphas_from_logits`);
    - ``topk=k`` (0 < k < K): both Dirichlets over the teachers' top-k classes of p̄ plus one
      merged class, β_rest = Σ_rest β_k and α_rest = Σ_rest α_k (aggregation property: the exact
      marginals), so lnΓ/ψ/ψ' run on N·(k+1) values instead of N·K. The dropped β-only constant
      is then that of the merged β; with k = K − 1 the loss equals the full one.

    With any option, α is built by autograd and the analytic gradient of the KL with respect to α
    ([Proxy] eq. 15/16 without the factor e^z) is chained through it.
    """
    if direction not in ("reverse", "forward"):
        raise ValueError(f"direction must be 'reverse' or 'forward', got {direction!r}")
    check_reduction(reduction)
    temperature = check_positive_finite(temperature, "temperature")
    model_offset = check_positive_finite(model_offset, "model_offset", allow_zero=True)
    mask = check_mask(mask, student_logits.shape[:-1])
    k = student_logits.shape[-1]
    topk = check_topk(topk, k)
    if target is None:
        if teacher_log_probs is None:
            raise ValueError("proxy_dirichlet_loss needs teacher_log_probs or a precomputed target")
        check_ensemble_shapes(student_logits, teacher_log_probs)
        if mask is not None:
            teacher_log_probs = mask_rows(teacher_log_probs, mask, -math.log(k) if k else 0.0, row_dims=teacher_log_probs.dim() - mask.dim())
        fused_kl = _fused_kl(student_logits, target_offset) if parametrization == "exp" and clip_precision is None and not topk else None
        if fused_kl is not None:
            fused = _fused_proxy_loss(fused_kl, student_logits, teacher_log_probs, direction, model_offset, target_offset,
                                      estimator, normalize, temperature, mask, reduction)
            if fused is not None:
                return fused
        target = proxy_target(teacher_log_probs, estimator=estimator, offset=target_offset, temperature=temperature)
    elif target.beta.shape != student_logits.shape or target.precision.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"target (beta {tuple(target.beta.shape)}, precision {tuple(target.precision.shape)}) does not match "
            f"student logits {tuple(student_logits.shape)}"
        )
    dtype = compute_dtype(student_logits, target.beta)
    lead = student_logits.shape[:-1]
    z = upcast(student_logits, dtype)
    beta = upcast(target.beta, dtype).detach()
    precision = upcast(target.precision, dtype).detach()
    if mask is not None:
        row_dims = z.dim() - mask.dim()
        z = mask_rows(z, mask, 0.0, row_dims)
        beta = mask_rows(beta, mask, 1.0, row_dims)
        precision = mask_rows(precision, mask, 1.0, row_dims - 1)
    if temperature != 1.0:
        z = z / temperature
    if parametrization == "exp" and clip_precision is None and not topk:
        value = _DirichletKLToTarget.apply(z.reshape(-1, k), beta.reshape(-1, k), float(model_offset), direction == "reverse")
    else:
        alpha = alphas_from_logits(z, offset=model_offset, parametrization=parametrization, clip_precision=clip_precision)
        if topk:
            top = topk_classes(beta, topk)  # β = p̄·β̂₀ + offset is ordered like p̄
            alpha, beta = merge_classes(alpha, top), merge_classes(beta, top)
        kk = alpha.shape[-1]
        value = _DirichletKLToTarget.apply(alpha.reshape(-1, kk), beta.reshape(-1, kk), 0.0, direction == "reverse", True)
    value = value.reshape(lead)
    if normalize:
        value = value / precision.clamp_min(1.0)
    return reduce_loss(value, reduction, mask), precision


class _WithGradient(torch.autograd.Function):
    """Attaches a gradient computed together with the value (by a compiled pass) to ``z``:
    backward returns ``grad · grad_out``, scaled in place (no second [N, K] buffer), so the graph can be
    differentiated once: first order only, and a second backward through it (``retain_graph=True``) raises."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, value: torch.Tensor, grad: Optional[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        ctx.grad = grad
        return value.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        grad, ctx.grad = ctx.grad, None
        if grad is None:
            raise RuntimeError("proxy_dirichlet_loss (fused path: compiled on the CPU, Triton on CUDA): the gradient was "
                               "already used by an earlier backward; recompute the loss, or set ENDIST_COMPILED_LOSS=0 "
                               "(CPU) / ENDIST_TRITON_LOSS=0 (CUDA) to backward through it twice")
        return grad.mul_(grad_out.unsqueeze(-1)), None, None


def _fused_kl(logits: torch.Tensor, target_offset: float):
    """The fused pass that applies to these logits: one Triton kernel on CUDA
    (:func:`shared._triton_proxy.triton_proxy_kl`), one compiled pass per row chunk on a large float32 CPU batch
    (:func:`shared._compiled.compiled_proxy_kl`), or None (the eager ops)."""
    if use_triton(logits, target_offset):
        return triton_proxy_kl
    if use_compiled(logits):
        return compiled_proxy_kl
    return None


def _fused_proxy_loss(fused_kl, student_logits, teacher_log_probs, direction, model_offset, target_offset, estimator,
                      normalize, temperature, mask, reduction) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`proxy_dirichlet_loss` with the defaults (masked teachers already replaced): the Proxy target
    ([Proxy] eq. 17) and the KL to it (eq. 13–16), value and gradient, in the fused pass ``fused_kl``
    (:func:`_fused_kl`), so β is never written to memory: (loss, β̂₀). None if that pass failed."""
    k = student_logits.shape[-1]
    lead = student_logits.shape[:-1]
    z = student_logits
    if mask is not None:
        z = mask_rows(z, mask, 0.0, z.dim() - mask.dim())
    m = teacher_log_probs.shape[-2]
    z2 = z.reshape(-1, k)
    with torch.no_grad():  # half teachers are upcast and both sides tempered inside the fused pass
        out = fused_kl(z2, teacher_log_probs.reshape(-1, m, k), float(model_offset), float(target_offset),
                       estimator, direction == "reverse", z2.requires_grad, temperature)
    if out is None:  # compilation failed: the caller takes the eager path
        return None
    grad = out[1] if out[1] is None or temperature == 1.0 else out[1].div_(temperature)  # ∂/∂z = ∂/∂(z/T) / T
    value, precision = _WithGradient.apply(z2, out[0], grad), out[2]
    value, precision = value.reshape(lead), precision.reshape(lead)
    if mask is not None:
        precision = torch.where(mask, precision, torch.ones((), dtype=precision.dtype, device=precision.device))
    if normalize:
        value = value / precision.clamp_min(1.0)
    return reduce_loss(value, reduction, mask), precision


def hydra_loss(
    head_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    temperature: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Hydra multi-head distillation ([Hydra] eq. 3–4): head h learns teacher h::

        L = T² · (1/H) Σ_h KL(softmax(ln p_h / T) ‖ softmax(z_h / T))

    Args:
        head_logits: ``[..., H, K]``; teacher_log_probs: ``[..., M=H, K]``.
    """
    if head_logits.shape != teacher_log_probs.shape:
        raise ValueError(
            f"hydra_loss needs one teacher per head: head_logits {tuple(head_logits.shape)} vs "
            f"teacher_log_probs {tuple(teacher_log_probs.shape)}"
        )
    if head_logits.dim() < 2:
        raise ValueError(f"head_logits must have shape [..., H, K], got {tuple(head_logits.shape)}")
    check_reduction(reduction)
    temperature = check_positive_finite(temperature, "temperature")
    mask = check_mask(mask, head_logits.shape[:-2])
    dtype = compute_dtype(head_logits, teacher_log_probs)
    z, lt = _masked_inputs(head_logits, teacher_log_probs, mask, dtype)
    log_q = torch.log_softmax(z / temperature, dim=-1)
    lt = _tempered_log_probs(lt, temperature)
    kl = (xlogy_safe(lt.exp(), lt) - xlogy_safe(lt.exp(), log_q)).sum(-1).mean(-1)
    return reduce_loss(kl * temperature**2, reduction, mask)


# ---------------------------------------------------------------------------------------------------
# AE-KD: adaptive teacher weights in gradient space (Du et al. 2020; [LatentBE] App. B.4, eqs. 27–29).
#
# The KD loss of teacher m at temperature τ, ℓ_m = τ² H[p_m^τ, q^τ], has the closed-form gradient at the
# student logits z:  g_m = ∂ℓ_m/∂z = τ (q^τ − p_m^τ)  (no backward pass through any network).  AE-KD takes
# the min-norm convex combination of these gradients with a cap C on every weight ([LatentBE] eqs. 28–29):
#
#     ω* = argmin_ω ½ ‖Σ_m ω_m g_m‖²   s.t.  Σ_m ω_m = 1,  0 ≤ ω_m ≤ C,
#
# the squared norm summed over the batch (one ω per batch): the M×M QP min ½ ωᵀGω, G_mn = Σ_b ⟨g_bm, g_bn⟩
# (gram="sum", what eq. 28 — written for one input — gives summed over a batch; gram="batch_mean": the authors'
# code, G_mn = ⟨ḡ_m, ḡ_n⟩ with ḡ_m the batch mean of g_bm, see aekd_gram).
# C ∈ [1/M, 1]; C = 1/M forces uniform weights (plain ensemble KD).  The weighted loss (eq. 27)
# Σ_m ω_m τ² H[p_m^τ, q^τ] equals, up to a constant in z, τ² KL(Σ_m ω_m p_m^τ ‖ q^τ) (ensemble_kd_loss
# on the ω-weighted tempered mixture).
# ---------------------------------------------------------------------------------------------------


def _check_cap(cap: float, m: int) -> None:
    if cap * m < 1 - 1e-12:
        raise ValueError(f"AE-KD cap C={cap} is infeasible for {m} teachers: need C >= 1/M = {1 / m:.4f}")


def project_capped_simplex(v: torch.Tensor, cap: float) -> torch.Tensor:
    """Exact Euclidean projection of ``v [..., M]`` onto ``{ω : Σω = 1, 0 ≤ ω ≤ cap}``.

    The projection is ``clip(v − λ, 0, cap)`` where ``f(λ) = Σ_i clip(v_i − λ, 0, cap) = 1``.  ``f`` is
    piecewise linear and non-increasing with breakpoints ``{v_i, v_i − cap}``; it is evaluated at all
    2M breakpoints (vectorised, O(M²)) and λ is interpolated on the segment where it crosses 1.
    """
    m = v.shape[-1]
    _check_cap(cap, m)
    bp = torch.cat([v, v - cap], -1).sort(-1).values  # [..., 2M], f(bp_0) = M·C ≥ 1, f(bp_last) = 0
    f = (v.unsqueeze(-2) - bp.unsqueeze(-1)).clamp(0.0, cap).sum(-1)  # [..., 2M], non-increasing
    j = ((f >= 1).sum(-1, keepdim=True) - 1).clamp(0, 2 * m - 2)  # last breakpoint with f ≥ 1
    lo, hi = bp.gather(-1, j), bp.gather(-1, j + 1)
    f_lo, f_hi = f.gather(-1, j), f.gather(-1, j + 1)
    slope = (f_lo - f_hi).clamp_min(torch.finfo(v.dtype).tiny)
    lam = torch.where(f_lo > f_hi, lo + (f_lo - 1) / slope * (hi - lo), lo)
    return (v - lam).clamp(0.0, cap)


def _polish_qp(gram: torch.Tensor, w: torch.Tensor, cap: float, tol: float = 1e-9) -> torch.Tensor:
    """Solve the KKT system on the active set identified by ``w`` (exact when the set is right)."""
    upper = w >= cap - tol
    free = ~upper & (w > tol)
    if not bool(free.any()):
        return w
    nf = int(free.sum())
    kkt = torch.zeros(nf + 1, nf + 1, dtype=gram.dtype)
    kkt[:nf, :nf] = gram[free][:, free]
    kkt[:nf, nf] = 1.0
    kkt[nf, :nf] = 1.0
    rhs = torch.cat([-cap * gram[free][:, upper].sum(1), torch.tensor([1.0 - cap * float(upper.sum())], dtype=gram.dtype)])
    sol, info = torch.linalg.solve_ex(kkt, rhs)
    if int(info) != 0:
        return w
    cand = torch.where(upper, torch.full_like(w, cap), torch.zeros_like(w))
    cand[free] = sol[:nf]
    feasible = float(cand.min()) >= -1e-12 and float(cand.max()) <= cap + 1e-12
    if feasible and float(cand @ gram @ cand) <= float(w @ gram @ w) + 1e-15:
        return cand.clamp(0.0, cap)
    return w


def solve_min_norm_qp(gram: torch.Tensor, cap: float, iters: int = 1000, tol: float = 1e-13) -> torch.Tensor:
    """``argmin_ω ½ ωᵀ G ω`` on the capped simplex; ``gram`` is ``[M, M]`` PSD ([LatentBE] eq. 28).

    Accelerated projected gradient (FISTA, step 1/λ_max(G), exact projection
    :func:`project_capped_simplex`) in float64 on the CPU, stopped when an iterate moves less than
    ``tol``, then polished by solving the KKT equations on the identified active set.  M is the number
    of teachers, so one solve is cheap.
    """
    g = gram.detach().double().cpu()
    m = g.shape[0]
    _check_cap(cap, m)
    lip = max(float(torch.linalg.eigvalsh(g).max()), 1e-300)
    w = project_capped_simplex(torch.full((m,), 1.0 / m, dtype=torch.float64), cap)
    y, t = w.clone(), 1.0
    for _ in range(iters):
        w_next = project_capped_simplex(y - (g @ y) / lip, cap)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = w_next + ((t - 1) / t_next) * (w_next - w)
        done = float((w_next - w).abs().max()) < tol
        w, t = w_next, t_next
        if done:
            break
    return _polish_qp(g, w, cap).to(gram.device)


def teacher_gradients(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """``g_m = τ (q^τ − p_m^τ)`` for every teacher: student ``[B, K]``, teachers ``[B, M, K]`` → ``[B, M, K]``."""
    q = torch.softmax(student_logits.detach().double() / temperature, -1).unsqueeze(-2)
    p = torch.softmax(teacher_log_probs.detach().double() / temperature, -1)
    return temperature * (q - p)


AEKDGram = Literal["sum", "batch_mean"]


def aekd_gram(g: torch.Tensor, gram: str = "sum") -> torch.Tensor:
    """The ``[M, M]`` Gram matrix of the teacher gradients ``g [B, M, K]`` of one batch.

    * ``"sum"``: ``G_mn = Σ_b ⟨g_bm, g_bn⟩`` — [LatentBE] eq. 28 is the squared norm for *one* input x; with one ω
      per batch its sum over the batch, ``Σ_b ‖Σ_m ω_m g_bm‖² = ωᵀGω``, gives this matrix (the paper's objective);
    * ``"batch_mean"``: ``G_mn = ⟨ḡ_m, ḡ_n⟩`` with ``ḡ_m = (1/B) Σ_b g_bm`` — the authors' AE-KD code (Du et al. 2020)
      averages the per-example gradients over the batch before forming G (the min-norm point of the gradients
      of the batch-mean losses, as in MGDA); gradients of different examples can cancel there.
    """
    if gram == "sum":
        return torch.einsum("bmk,bnk->mn", g, g)
    if gram == "batch_mean":
        gm = g.mean(0)
        return gm @ gm.T
    raise ValueError(f"AE-KD gram must be 'sum' or 'batch_mean', got {gram!r}")


def aekd_weights(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float = 1.0,
                 cap: float = 0.6, gram: AEKDGram = "sum") -> torch.Tensor:
    """Teacher weights ``ω [M]`` (Σω = 1, 0 ≤ ω ≤ C) for one batch, from the closed-form logit gradients and the
    Gram matrix ``gram`` (:func:`aekd_gram`: ``sum`` = [LatentBE] eq. 28 summed over the batch, ``batch_mean`` =
    the authors' code)."""
    if teacher_log_probs.dim() != 3 or student_logits.dim() != 2:
        raise ValueError(
            "aekd_weights expects student logits [B, K] and teacher log-probs [B, M, K], got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_log_probs.shape)}"
        )
    if not 0 < cap <= 1:
        raise ValueError(f"AE-KD cap C must be in (0, 1], got {cap}")
    g = teacher_gradients(student_logits, teacher_log_probs, temperature)
    return solve_min_norm_qp(aekd_gram(g, gram), cap).to(student_logits.dtype)


def aekd_loss(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float = 1.0,
              cap: float = 0.6, gram: AEKDGram = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """AE-KD loss ([LatentBE] eq. 27) and the weights used: ``τ² KL(Σ_m ω_m p_m^τ ‖ q^τ)``, mean over the batch.

    ``student_logits`` may be ``[B, K]`` or multi-member ``[B, S, K]`` (ω from the member-mean logits,
    loss averaged over members). ``gram``: see :func:`aekd_gram`.
    """
    single = student_logits if student_logits.dim() == 2 else student_logits.mean(1)
    w = aekd_weights(single, teacher_log_probs, temperature, cap, gram)
    tempered = torch.log_softmax(teacher_log_probs.float() / temperature, -1)
    mix = torch.logsumexp(tempered + w.float().clamp_min(1e-30).log().unsqueeze(-1), dim=-2)  # log Σ ω p^τ
    # ensemble_kd_loss tempers its target as softmax(log_probs / τ); feeding τ·log(mix) returns mix itself.
    target = (temperature * mix).unsqueeze(-2)
    if student_logits.dim() == 3:
        target = target.unsqueeze(1).expand(-1, student_logits.shape[1], -1, -1)
    loss = ensemble_kd_loss(student_logits, target, temperature=temperature)
    return loss.mean() if loss.dim() > 0 else loss, w
