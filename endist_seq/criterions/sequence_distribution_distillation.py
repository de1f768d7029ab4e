"""Criterion ``sequence_distribution_distillation``: EnD², Dirichlet NLL of the members.

Per target token ([EnD2] eq. 8 / 11, central smoothing eq. 12, temperature §3.1)::

    L_t = −(1/M) Σ_m ln Dir(π̃_m | α),   α = exp(z / T) + model_offset,
    π̃_m = (1 − γ) softmax(ln p_m / T) + γ / K

computed by :func:`shared.losses.dirichlet_nll_loss` (γ = ``--central-smoothing``).
"""


from dataclasses import dataclass, field

from fairseq.criterions import register_criterion
from torch import Tensor

from endist_seq.errors import FlagError
from endist_seq.criterions._distillation_base import DistillationCriterion, DistillationCriterionConfig
from shared.dirichlet import ProxyTarget
from shared.losses import dirichlet_nll_loss
from shared.teacher_cache import cached_dirichlet_nll_loss


@dataclass
class SequenceDistributionDistillationConfig(DistillationCriterionConfig):
    model_offset: float = field(default=0.0, metadata={"help": "alpha = exp(z / T) + offset ([EnD2] uses 0)"})
    central_smoothing: float = field(
        default=1e-4, metadata={"help": "central smoothing gamma of the members' probabilities ([EnD2] eq. 12)"}
    )


@register_criterion("sequence_distribution_distillation", dataclass=SequenceDistributionDistillationConfig)
class SequenceDistributionDistillation(DistillationCriterion):
    """EnD²: maximum likelihood of the members' predictions under the student's Dirichlet."""

    def __init__(self, cfg: SequenceDistributionDistillationConfig, task) -> None:
        super().__init__(cfg, task)
        if not 0.0 <= cfg.central_smoothing < 1.0:
            raise FlagError(f"--central-smoothing must be in [0, 1), got {cfg.central_smoothing}")
        self.smoothing = float(cfg.central_smoothing)

    def _options(self, temperature: float) -> dict:
        """The keyword arguments the uncached and the cached loss share."""
        return dict(temperature=temperature, smoothing=self.smoothing, model_offset=self.model_offset, reduction="none",
                    parametrization=self.parametrization, clip_precision=self.clip_precision)

    def distillation_loss(self, logits: Tensor, teacher_log_probs: Tensor, temperature: float, target: ProxyTarget) -> Tensor:
        return dirichlet_nll_loss(logits, teacher_log_probs, topk=self.topk, **self._options(temperature))

    def cached_distillation_loss(self, logits: Tensor, record, layout, temperature: float, target: ProxyTarget) -> Tensor:
        return cached_dirichlet_nll_loss(logits, record, layout, merge_rest=bool(self.topk), **self._options(temperature))
