"""``proxy_end2``: Proxy-Dirichlet distillation ([Proxy] §3–4): the ensemble is summarised by a
proxy Dirichlet β = p̄·β̂₀ + 1 (Minka's estimate of the precision, [Proxy] eq. 17) and the student
Dir(α), α = exp(z) + 1, minimises the reverse KL[Dir(α)‖Dir(β)] (``direction="forward"`` optional),
via :func:`shared.losses.proxy_dirichlet_loss`. Offsets 1 on both sides ([Proxy] §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.losses import proxy_dirichlet_loss

from . import Method, register_method


@dataclass
class ProxyEnD2Config:
    direction: Literal["reverse", "forward"] = "reverse"  # KL[Dir(α)‖Dir(β)] or KL[Dir(β)‖Dir(α)]
    model_offset: float = 1.0  # α = exp(z) + offset
    target_offset: float = 1.0  # β = p̄·β̂₀ + offset
    estimator: Literal["mkl", "epkl"] = "mkl"  # precision estimate of the proxy target
    normalize: bool = True  # divide the loss by the target precision
    temperature: float = 1.0  # teacher temperature


@register_method("proxy_end2")
class ProxyEnD2(Method):
    needs_teacher = True
    output = "dirichlet"
    config_class = ProxyEnD2Config
    config: ProxyEnD2Config

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        c = self.config
        return proxy_dirichlet_loss(
            student_out,
            teacher_log_probs,
            direction=c.direction,
            model_offset=c.model_offset,
            target_offset=c.target_offset,
            estimator=c.estimator,
            normalize=c.normalize,
            temperature=c.temperature,
        )

    def dirichlet_offset(self) -> float:
        return self.config.model_offset
