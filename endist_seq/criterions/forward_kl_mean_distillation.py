"""Criterion ``forward_kl_mean_distillation``: EnD, token-level KL to the ensemble mean.

Per target token ([EnD2] eq. 5 with temperature T, Hinton et al. 2015)::

    L_t = T² · KL(p̄_T ‖ q_T),  p̄_T = (1/M) Σ_m softmax(ln p_m / T),  q_T = softmax(z / T)

computed by :func:`shared.losses.ensemble_kd_loss`. ``--model-offset`` only
affects the logged α₀ (default 0 here); ``--target-offset`` /
``--target-concentration`` only the logged β̂₀.
"""


from dataclasses import dataclass, field

from fairseq.criterions import register_criterion
from torch import Tensor

from endist_seq.criterions._distillation_base import DistillationCriterion, DistillationCriterionConfig
from shared.dirichlet import ProxyTarget
from shared.losses import ensemble_kd_loss
from shared.teacher_cache import cached_kd_loss


@dataclass
class ForwardKLMeanDistillationConfig(DistillationCriterionConfig):
    model_offset: float = field(default=0.0, metadata={"help": "offset of the logged alpha0 (not used by the loss)"})


@register_criterion("forward_kl_mean_distillation", dataclass=ForwardKLMeanDistillationConfig)
class ForwardKLMeanDistillation(DistillationCriterion):
    """EnD: the student matches the ensemble's mean prediction."""

    student_is_dirichlet = False

    def distillation_loss(self, logits: Tensor, teacher_log_probs: Tensor, temperature: float, target: ProxyTarget) -> Tensor:
        return ensemble_kd_loss(logits, teacher_log_probs, temperature=temperature, reduction="none")

    def cached_distillation_loss(self, logits: Tensor, record, layout, temperature: float, target: ProxyTarget) -> Tensor:
        return cached_kd_loss(logits, record, layout, temperature=temperature, reduction="none")
