"""``end``: Ensemble Distillation — match the ensemble mean at temperature T (default 2.5,
[EnD2] App. A.2): L = T²·KL(p̄_T ‖ q_T) ([EnD2] eq. 5), via :func:`shared.losses.ensemble_kd_loss`."""

from __future__ import annotations

from shared.losses import ensemble_kd_loss

from . import Method, register_method


@register_method("end")
class EnD(Method):
    needs_teacher = True
    defaults = {"temperature": 2.5}

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        return ensemble_kd_loss(student_out, teacher_log_probs, temperature=float(self.args["temperature"]))

    def log_values(self, step):  # type: ignore[override]
        return {"distill/temperature": float(self.args["temperature"])}
