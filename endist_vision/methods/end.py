"""``end``: Ensemble Distillation — match the ensemble mean at temperature T (default 2.5,
[EnD2] App. A.2): L = T²·KL(p̄_T ‖ q_T) ([EnD2] eq. 5), via :func:`shared.losses.ensemble_kd_loss`."""

from __future__ import annotations

from dataclasses import dataclass

from shared.losses import ensemble_kd_loss

from . import Method, register_method


@dataclass
class EnDConfig:
    temperature: float = 2.5  # T of the tempered teacher mean and student


@register_method("end")
class EnD(Method):
    needs_teacher = True
    config_class = EnDConfig
    config: EnDConfig

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        return ensemble_kd_loss(student_out, teacher_log_probs, temperature=self.config.temperature)

    def log_values(self, step):  # type: ignore[override]
        return {"distill/temperature": self.config.temperature}
