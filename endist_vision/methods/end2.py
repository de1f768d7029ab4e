"""``end2``: Ensemble Distribution Distillation — Dirichlet NLL of the members' predictions
([EnD2] eq. 8, 11) with central smoothing γ = 1e-4 (eq. 12) and temperature annealing (§3.1,
App. A.2): T = T₀ = 10 for the first half-cycle (``hold_frac`` of the steps), then linear to 1 over
``decay_frac`` of the steps, then 1. α = exp(z) (offset 0) at evaluation.

``ce_weight`` w (default 0: pure distillation, as [EnD2]): L = (1 − w)·NLL + w·H[y, α/α₀], the
cross-entropy of the expected categorical, in the form of [LatentBE] eq. 26
(:mod:`endist_vision.methods._labels`)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.losses import dirichlet_nll_loss
from shared.schedules import TemperatureAnnealing

from . import Method, register_method
from ._labels import check_ce_weight, mix_ce


@dataclass
class EnD2Config:
    initial_temperature: float = 10.0  # T₀ of the annealing schedule
    hold_frac: float = 1 / 3  # fraction of the steps at T₀
    decay_frac: float = 1 / 3  # fraction of the steps of the linear decay T₀ → 1
    smoothing: float = 1e-4  # central smoothing γ ([EnD2] eq. 12)
    model_offset: float = 0.0  # α = exp(z) + offset
    ce_weight: float = 0.0  # weight of the label cross-entropy of α/α₀ (0: pure distillation)

    def __post_init__(self) -> None:
        check_ce_weight(self.ce_weight)


@register_method("end2")
class EnD2(Method):
    needs_teacher = True
    uses_topk_cache = True  # the loss reads a distill.teacher_mode=topk_cache record too
    output = "dirichlet"
    config_class = EnD2Config
    config: EnD2Config

    def __init__(self, cfg, num_classes, total_steps, *, teacher_members=None):  # type: ignore[no-untyped-def]
        super().__init__(cfg, num_classes, total_steps, teacher_members=teacher_members)
        c = self.config
        self.schedule = TemperatureAnnealing(
            initial=c.initial_temperature,
            final=1.0,
            hold_steps=int(round(c.hold_frac * total_steps)),
            decay_steps=int(round(c.decay_frac * total_steps)),
        )

    @classmethod
    def cache_temperatures(cls, config):  # type: ignore[override]
        return (config.initial_temperature, 1.0)  # the annealing's end points (in between: interpolated)

    def temperature(self, step: int) -> float:
        return float(self.schedule(step))

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        loss_fn = dirichlet_nll_loss
        if isinstance(teacher_log_probs, tuple):  # distill.teacher_mode=topk_cache: (record, layout)
            from shared.teacher_cache import cached_dirichlet_nll_loss

            loss_fn = lambda z, t, **kw: cached_dirichlet_nll_loss(z, *t, **kw)  # noqa: E731
        nll = loss_fn(
            student_out,
            teacher_log_probs,
            temperature=self.temperature(step),
            smoothing=self.config.smoothing,
            model_offset=self.config.model_offset,
        )
        return mix_ce(nll, self.config.ce_weight, student_out, labels, dirichlet_offset=self.config.model_offset)

    def dirichlet_offset(self) -> float:
        return self.config.model_offset

    def log_values(self, step):  # type: ignore[override]
        return {"distill/temperature": self.temperature(step)}
