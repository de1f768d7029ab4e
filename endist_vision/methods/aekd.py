"""``aekd``: a single student distilled with AE-KD teacher weights (Du et al. 2020; [LatentBE] App. B.4,
eqs. 27–29): per batch, ω = argmin ‖Σ_m ω_m g_m‖² on {Σω = 1, 0 ≤ ω ≤ C} from the closed-form
gradients g_m = τ(q_τ − p_m,τ) at the student logits, then L = τ² KL(Σ_m ω_m p_m,τ ‖ q_τ)
(:mod:`endist_vision.multimember.aekd`, loss through ``shared.losses.ensemble_kd_loss``).
Perturbation options as in :mod:`endist_vision.multimember.method_utils`.
"""

from __future__ import annotations

from endist_vision.errors import ConfigError
from ._multimember import PERTURBATION_DEFAULTS, MultiMemberMethod, check_aekd_cap

from . import register_method


@register_method("aekd")
class AEKD(MultiMemberMethod):
    defaults = {"temperature": 2.5, "aekd_cap": 0.6, **PERTURBATION_DEFAULTS}

    def __init__(self, cfg, num_classes, total_steps):  # type: ignore[no-untyped-def]
        super().__init__(cfg, num_classes, total_steps)
        cap = self.args["aekd_cap"]
        if cap is None or not 0 < float(cap) <= 1:
            raise ConfigError(f"method_args.aekd_cap must be in (0, 1] (C >= 1/M), got {cap!r}")
        check_aekd_cap(cfg, float(cap))

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        m = teacher_log_probs.shape[1]
        if float(self.args["aekd_cap"]) * m < 1 - 1e-12:
            raise ConfigError(f"method_args.aekd_cap={self.args['aekd_cap']} is infeasible for {m} teachers: need >= 1/M = {1 / m:.4f}")
        return self.distill_loss(student_out, teacher_log_probs, "kd")
