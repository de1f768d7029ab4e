"""``end2``: Ensemble Distribution Distillation — Dirichlet NLL of the members' predictions
([EnD2] eq. 8, 11) with central smoothing γ = 1e-4 (eq. 12) and temperature annealing (§3.1,
App. A.2): T = T₀ = 10 for the first half-cycle (``hold_frac`` of the steps), then linear to 1 over
``decay_frac`` of the steps, then 1. α = exp(z) (offset 0) at evaluation."""

from __future__ import annotations

from shared.losses import dirichlet_nll_loss
from shared.schedules import TemperatureAnnealing

from . import Method, register_method


@register_method("end2")
class EnD2(Method):
    needs_teacher = True
    output = "dirichlet"
    defaults = {"initial_temperature": 10.0, "hold_frac": 1 / 3, "decay_frac": 1 / 3, "smoothing": 1e-4, "model_offset": 0.0}

    def __init__(self, cfg, num_classes, total_steps):  # type: ignore[override]
        super().__init__(cfg, num_classes, total_steps)
        a = self.args
        self.schedule = TemperatureAnnealing(
            initial=float(a["initial_temperature"]),
            final=1.0,
            hold_steps=int(round(float(a["hold_frac"]) * total_steps)),
            decay_steps=int(round(float(a["decay_frac"]) * total_steps)),
        )

    def temperature(self, step: int) -> float:
        return float(self.schedule(step))

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        return dirichlet_nll_loss(
            student_out,
            teacher_log_probs,
            temperature=self.temperature(step),
            smoothing=float(self.args["smoothing"]),
            model_offset=float(self.args["model_offset"]),
        )

    def dirichlet_offset(self) -> float:
        return float(self.args["model_offset"])

    def log_values(self, step):  # type: ignore[override]
        return {"distill/temperature": self.temperature(step)}
