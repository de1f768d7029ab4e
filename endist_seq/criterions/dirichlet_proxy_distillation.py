"""Criterion ``dirichlet_proxy_distillation``: forward KL to the Proxy-Dirichlet target.

Per target token ([Proxy] §3, eq. 13 and 17)::

    β = p̄_T · β̂₀ + target_offset,   α = exp(z / T) + model_offset
    L_t = KL[Dir(β) ‖ Dir(α)] / max(β̂₀, 1)        (β-only constants dropped)

computed by :func:`shared.losses.proxy_dirichlet_loss_and_precision` (``direction="forward"``),
which builds the target of :func:`shared.dirichlet.proxy_target` itself — fused with the loss on CUDA
(one Triton kernel) and for large float32 CPU batches — and returns β̂₀ for the log.
"""


from dataclasses import dataclass
from typing import Optional, Tuple

from fairseq.criterions import register_criterion
from torch import Tensor

from endist_seq.criterions._distillation_base import DistillationCriterion, DistillationCriterionConfig
from shared.dirichlet import ProxyTarget
from shared.losses import proxy_dirichlet_loss_and_precision
from shared.teacher_cache import cached_proxy_dirichlet_loss


@dataclass
class DirichletProxyDistillationConfig(DistillationCriterionConfig):
    pass


@register_criterion("dirichlet_proxy_distillation", dataclass=DirichletProxyDistillationConfig)
class DirichletProxyDistillation(DistillationCriterion):
    """Forward KL from the Proxy-Dirichlet target to the student's Dirichlet."""

    direction = "forward"

    def _options(self, temperature: float, target: Optional[ProxyTarget]) -> dict:
        """The keyword arguments the uncached and the cached loss share."""
        return dict(direction=self.direction, model_offset=self.model_offset, target_offset=self.target_offset,
                    estimator=self.estimator, normalize=True, temperature=temperature, target=target, reduction="none",
                    parametrization=self.parametrization, clip_precision=self.clip_precision)

    def fused_distillation_loss(self, logits: Tensor, teacher_log_probs: Tensor, temperature: float) -> Tuple[Tensor, Tensor]:
        return proxy_dirichlet_loss_and_precision(logits, teacher_log_probs, topk=self.topk, **self._options(temperature, None))

    def cached_distillation_loss(self, logits: Tensor, record, layout, temperature: float, target: ProxyTarget) -> Tensor:
        return cached_proxy_dirichlet_loss(logits, record, layout, **self._options(temperature, target))
