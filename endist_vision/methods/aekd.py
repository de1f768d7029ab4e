"""``aekd``: a single student distilled with AE-KD teacher weights (Du et al. 2020; [LatentBE] App. B.4,
eqs. 27–29): per batch, ω = argmin ‖Σ_m ω_m g_m‖² on {Σω = 1, 0 ≤ ω ≤ C} from the closed-form
gradients g_m = τ(q_τ − p_m,τ) at the student logits, then L = τ² KL(Σ_m ω_m p_m,τ ‖ q_τ)
(``shared.losses.aekd_loss``). Options: :class:`AEKDConfig` (temperature and perturbation options from
:class:`endist_vision.methods._multimember.DistillConfig`).

``aekd_gram``: the Gram matrix G of the QP (``shared.losses.aekd_gram``). ``sum`` (default), G_mn = Σ_b ⟨g_bm, g_bn⟩,
is what [LatentBE] eq. 28 — the squared norm for one input x — gives when one ω is shared by the batch (the sum of
eq. 28 over the batch); ``batch_mean``, G_mn = ⟨ḡ_m, ḡ_n⟩ with ḡ_m = (1/B) Σ_b g_bm, is the authors' AE-KD code
(per-example gradients averaged over the batch before G is formed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.losses import aekd_loss

from endist_vision.errors import ConfigError

from ._multimember import DistillConfig, MultiMemberMethod, check_aekd_cap

from . import register_method

CAP_HINT = " (C >= 1/M)"


@dataclass
class AEKDConfig(DistillConfig):
    aekd_cap: float | None = 0.6  # cap C on every teacher weight, 1/M <= C <= 1
    aekd_gram: Literal["sum", "batch_mean"] = "sum"  # G: eq. 28 summed over the batch | the authors' batch mean

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aekd_cap is None:
            raise ConfigError(f"method_args.aekd_cap must be in (0, 1]{CAP_HINT}, got None")
        check_aekd_cap(self.aekd_cap, None, CAP_HINT)


@register_method("aekd")
class AEKD(MultiMemberMethod):
    config_class = AEKDConfig
    config: AEKDConfig

    def distillation_loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        m = teacher_log_probs.shape[1]
        cap = self.config.aekd_cap
        if cap * m < 1 - 1e-12:
            raise ConfigError(f"method_args.aekd_cap={cap} is infeasible for {m} teachers: need >= 1/M = {1 / m:.4f}")
        loss, w = aekd_loss(student_out, teacher_log_probs, temperature=self.config.temperature, cap=cap,
                            gram=self.config.aekd_gram)
        self._last_weights = w.detach()
        return loss
