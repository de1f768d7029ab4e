"""``end``: Ensemble Distillation — match the ensemble mean at temperature T (default 2.5,
[EnD2] App. A.2): L = T²·KL(p̄_T ‖ q_T) ([EnD2] eq. 5), via :func:`shared.losses.ensemble_kd_loss`.

``ce_weight`` w (default 0: pure distillation, as [EnD2]) mixes in the label cross-entropy of
[LatentBE] eq. 26: L = (1 − w)·T²·KL + w·H[y, q] with w = 1 − α (:mod:`endist_vision.methods._labels`;
the [LatentBE] recipe sets α, τ per data set)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.losses import ensemble_kd_loss

from . import Method, register_method
from ._labels import check_ce_weight, mix_ce


@dataclass
class EnDConfig:
    temperature: float = 2.5  # T of the tempered teacher mean and student
    ce_weight: float = 0.0  # 1 − α of [LatentBE] eq. 26 (0: pure distillation)

    def __post_init__(self) -> None:
        check_ce_weight(self.ce_weight)


@register_method("end")
class EnD(Method):
    needs_teacher = True
    uses_topk_cache = True  # the loss reads a distill.teacher_mode=topk_cache record too
    config_class = EnDConfig
    config: EnDConfig

    @classmethod
    def cache_temperatures(cls, config):  # type: ignore[override]
        return (config.temperature,)

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        if isinstance(teacher_log_probs, tuple):  # distill.teacher_mode=topk_cache: (record, layout)
            from shared.teacher_cache import cached_kd_loss

            kd = cached_kd_loss(student_out, *teacher_log_probs, temperature=self.config.temperature)
        else:
            kd = ensemble_kd_loss(student_out, teacher_log_probs, temperature=self.config.temperature)
        return mix_ce(kd, self.config.ce_weight, student_out, labels)

    def log_values(self, step):  # type: ignore[override]
        return {"distill/temperature": self.config.temperature}
