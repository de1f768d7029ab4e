"""``proxy_end2``: Proxy-Dirichlet distillation ([Proxy] §3–4): the ensemble is summarised by a
proxy Dirichlet β = p̄·β̂₀ + 1 (Minka's estimate of the precision, [Proxy] eq. 17) and the student
Dir(α), α = exp(z) + 1, minimises the reverse KL[Dir(α)‖Dir(β)] (``direction="forward"`` optional),
via :func:`shared.losses.proxy_dirichlet_loss`. Offsets 1 on both sides ([Proxy] §4).

``ce_weight`` w (default 0: pure distillation, as [Proxy]): L = (1 − w)·KL + w·H[y, α/α₀], the
cross-entropy of the expected categorical, in the form of [LatentBE] eq. 26
(:mod:`endist_vision.methods._labels`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.dirichlet import proxy_target
from shared.losses import proxy_dirichlet_loss

from . import Method, register_method
from ._labels import check_ce_weight, mix_ce


@dataclass
class ProxyEnD2Config:
    direction: Literal["reverse", "forward"] = "reverse"  # KL[Dir(α)‖Dir(β)] or KL[Dir(β)‖Dir(α)]
    model_offset: float = 1.0  # α = exp(z) + offset
    target_offset: float = 1.0  # β = p̄·β̂₀ + offset
    estimator: Literal["mkl", "epkl"] = "mkl"  # precision estimate of the proxy target
    normalize: bool = True  # divide the loss by the target precision
    temperature: float = 1.0  # teacher temperature
    ce_weight: float = 0.0  # weight of the label cross-entropy of α/α₀ (0: pure distillation)

    def __post_init__(self) -> None:
        check_ce_weight(self.ce_weight)


@register_method("proxy_end2")
class ProxyEnD2(Method):
    needs_teacher = True
    uses_topk_cache = True  # the loss reads a distill.teacher_mode=topk_cache record too
    output = "dirichlet"
    config_class = ProxyEnD2Config
    config: ProxyEnD2Config

    @classmethod
    def cache_temperatures(cls, config):  # type: ignore[override]
        return (config.temperature,)

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        c = self.config
        loss_fn = proxy_dirichlet_loss
        if isinstance(teacher_log_probs, tuple):  # distill.teacher_mode=topk_cache: (record, layout)
            from shared.teacher_cache import cached_proxy_dirichlet_loss

            loss_fn = lambda z, t, **kw: cached_proxy_dirichlet_loss(z, *t, **kw)  # noqa: E731
        kl = loss_fn(
            student_out,
            teacher_log_probs,
            direction=c.direction,
            model_offset=c.model_offset,
            target_offset=c.target_offset,
            estimator=c.estimator,
            normalize=c.normalize,
            temperature=c.temperature,
        )
        return mix_ce(kl, c.ce_weight, student_out, labels, dirichlet_offset=c.model_offset)

    def dirichlet_offset(self) -> float:
        return self.config.model_offset

    def batch_log_values(self, student_out, teacher_log_probs):  # type: ignore[override]
        """``beta0``: mean precision β̂₀ of the batch's Proxy-Dirichlet targets ([Proxy] eq. 17), the estimate the loss uses."""
        if teacher_log_probs is None:
            return {}
        c = self.config
        if isinstance(teacher_log_probs, tuple):  # distill.teacher_mode=topk_cache: β̂₀ from the (record, layout)
            from shared.teacher_cache import targets_at

            cached = targets_at(*teacher_log_probs, temperature=c.temperature)
            precision = cached.precision_mkl if c.estimator == "mkl" else cached.precision_epkl
            return {"beta0": float(precision.double().mean())}
        target = proxy_target(teacher_log_probs, estimator=c.estimator, offset=c.target_offset, temperature=c.temperature)
        return {"beta0": float(target.precision.double().mean())}
