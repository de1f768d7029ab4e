"""``hydra``: shared body + one head per teacher, trained in two phases ([Hydra] §2).

* Student: ``model.name`` (e.g. ``digits_cnn``) split by :class:`endist_vision.models.HydraNet` — the
  last ``head_blocks`` blocks form the head; ``members`` heads (null: one per teacher member). ``head_mlp``
  ([h₁, …]): those blocks are replaced by a new MLP head ``h₁-…-K`` ([Hydra] §3 MNIST: [100, 100, 10]).
* Phase 1: only the Hinton head is active and learns the ensemble mean, ``L = T² KL(p̄_T ‖ q_T)``
  ([Hydra] eq. 1, ``shared.losses.ensemble_kd_loss``). [Hydra] §2: "in the first phase ... it is trained until
  convergence with a single head"; here convergence means a budget of its own: ``phase1_epochs`` E₁ epochs
  *before* the ``train.epochs`` of phase 2 (run length (E₁ + train.epochs) epochs; ``train.max_steps``, for
  tests, is split in the same proportion), and the LR schedule (warm-up, cosine/one-cycle) restarts at phase 2,
  so each phase is a full run of its own. ``phase1_epochs: null`` keeps the older single schedule whose first
  ``phase1_frac`` of the steps are phase 1. No early-stopping criterion (the paper names none).
* Phase 2: the Hinton head is copied into every head and head m learns teacher m,
  ``L = (T²/M) Σ_m KL(p_m,T ‖ q_m,T)`` ([Hydra] eqs. 3–4, ``shared.losses.hydra_loss``).
* Evaluated as an ensemble of its heads ``[B, M, K]``.
* Options: :class:`HydraConfig` (temperature and perturbation options from
  :class:`endist_vision.methods._multimember.DistillConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from endist_vision.errors import ConfigError
from endist_vision.models import HydraNet, raw_net, wrap_like

from ._multimember import DistillConfig, MultiMemberMethod, check_members

from . import register_method


@dataclass
class HydraConfig(DistillConfig):
    members: int | None = None  # heads M; null: one per teacher member
    head_blocks: int = 3  # the last N blocks of model.name form a head
    phase1_frac: float = 0.5  # phase1_epochs null: fraction of the steps with the Hinton head only
    phase1_epochs: int | None = None  # epochs of phase 1 before the train.epochs of phase 2 (own LR schedule)
    head_mlp: list[int] | None = None  # hidden widths of a new MLP head ([Hydra] MNIST: [100, 100])

    def __post_init__(self) -> None:
        super().__post_init__()
        check_members(self.members)
        if not 0.0 <= self.phase1_frac < 1.0:
            raise ConfigError(f"method_args.phase1_frac must be in [0, 1), got {self.phase1_frac}")
        if self.phase1_epochs is not None and self.phase1_epochs < 1:
            raise ConfigError(f"method_args.phase1_epochs must be >= 1 (or null), got {self.phase1_epochs}")
        if self.head_mlp is not None and (not self.head_mlp or min(self.head_mlp) < 1):
            raise ConfigError(f"method_args.head_mlp must be a non-empty list of widths >= 1 (or null), got {self.head_mlp}")


@register_method("hydra")
class Hydra(MultiMemberMethod):
    config_class = HydraConfig
    config: HydraConfig

    def __init__(self, cfg, num_classes, total_steps, *, teacher_members=None):  # type: ignore[no-untyped-def]
        super().__init__(cfg, num_classes, total_steps, teacher_members=teacher_members)
        e1 = self.config.phase1_epochs
        if e1 is None:
            self.phase1_steps = int(round(self.config.phase1_frac * total_steps))
        else:  # total = (E1 + E2)·steps_per_epoch (or train.max_steps, split in the same proportion)
            e2 = int(cfg.get("train", {}).get("epochs", 0))
            self.phase1_steps = int(round(total_steps * e1 / (e1 + e2))) if e2 > 0 else total_steps

    @classmethod
    def extra_epochs(cls, config: HydraConfig) -> int:  # type: ignore[override]
        """Phase 1's own budget ``phase1_epochs`` comes on top of ``train.epochs`` (phase 2)."""
        return int(config.phase1_epochs or 0)

    def phase_starts(self) -> list[int]:
        """With ``phase1_epochs`` the LR schedule restarts when phase 2 begins."""
        return [0] if self.config.phase1_epochs is None else [0, self.phase1_steps]

    def build_student(self, make_model: Callable[[int], nn.Module]) -> nn.Module:
        base = make_model(int(self.cfg["seed"]))
        try:
            net = HydraNet.from_network(raw_net(base), self.config.head_blocks, self.resolved_members(),
                                        head_mlp=self.config.head_mlp)
        except ValueError as e:
            raise ConfigError(f"method_args.head_blocks / model.name={self.cfg['model']['name']}: {e}") from e
        return wrap_like(base, net)

    def on_step_start(self, step, model, optimizer):  # type: ignore[no-untyped-def]
        net: HydraNet = raw_net(model)
        if step < self.phase1_steps and not net.in_hinton_phase and net.num_heads > 1:
            net.hinton_phase()
        elif step >= self.phase1_steps and net.num_members != net.num_heads:
            net.grow_heads()

    def distillation_loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        if student_out.shape[1] == 1 and teacher_log_probs.shape[1] > 1:  # phase 1: Hinton head
            return self.distill_loss(student_out[:, 0], teacher_log_probs, "kd")
        return self.distill_loss(student_out, teacher_log_probs, "head")

    def log_values(self, step):  # type: ignore[override]
        return {**super().log_values(step), "hydra/phase": 1.0 if step < self.phase1_steps else 2.0}
