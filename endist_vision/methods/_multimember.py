"""Shared base of the distillation methods with multi-member students or input perturbations
(``hydra``, ``batchensemble``, ``latentbe``, ``aekd``; issue #6).

Private module (leading underscore: not auto-registered).  :class:`MultiMemberMethod` adds to
:class:`endist_vision.methods.Method`:

* the perturbation options of :class:`DistillConfig` (``perturbation: none|gaussian|ods|confods|tdiv_sdiv``,
  ``perturbation_gamma`` γ, ``perturbation_temperature``) applied to the raw [0, 1] batch before the
  distillation loss (:mod:`endist_vision.perturbations`); when one is active the teacher runs online
  on the perturbed batch;
* the distillation objectives ``kd`` (every student member matches the ensemble mean,
  ``shared.losses.ensemble_kd_loss``; with ``aekd_cap`` set, the AE-KD weighted mean,
  ``shared.losses.aekd_loss``) and ``head`` (member m matches teacher m, ``shared.losses.hydra_loss``);
* :meth:`MultiMemberMethod.resolved_members`: ``members: null`` = one student member per teacher member,
  from the ``teacher_members`` the trainer passes (the resolved value is saved in the checkpoint meta).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from endist_vision.errors import ConfigError
from endist_vision.perturbations import PerturbationKind, perturb
from endist_vision.teacher import differentiable_teacher
from shared.losses import aekd_loss, ensemble_kd_loss, hydra_loss

from .base import Method

@dataclass
class DistillConfig:
    """Options common to every multi-member method."""

    temperature: float = 2.5  # distillation temperature T
    perturbation: PerturbationKind = "none"  # input perturbation ([LatentBE] §3.2)
    perturbation_gamma: float = 1.0  # ‖δ‖₂ = γ·√D/255
    perturbation_temperature: float = 1.0  # τ of the perturbation objective

    def __post_init__(self) -> None:
        if self.perturbation_gamma < 0:
            raise ConfigError(f"method_args.perturbation_gamma must be >= 0, got {self.perturbation_gamma}")
        if self.temperature <= 0:
            raise ConfigError(f"method_args.temperature must be > 0, got {self.temperature}")


def check_members(members: int | None) -> None:
    """``method_args.members`` is null or >= 1."""
    if members is not None and members < 1:
        raise ConfigError(f"method_args.members must be >= 1, got {members}")


def check_aekd_cap(cap: float | None, teacher_members: int | None, hint: str = "") -> None:
    """``aekd_cap`` C in (0, 1] and, when the teacher's member count M is known, C >= 1/M."""
    if cap is None:
        return
    if not 0 < cap <= 1:
        raise ConfigError(f"method_args.aekd_cap must be in (0, 1]{hint}, got {cap!r}")
    m = teacher_members
    if m is not None and cap * m < 1 - 1e-12:
        raise ConfigError(f"method_args.aekd_cap={cap} is infeasible for {m} teacher members: need >= 1/M = {1 / m:.4f}")


class MultiMemberMethod(Method):
    """Shared options of the multi-member methods (see module docstring)."""

    needs_teacher = True
    config_class = DistillConfig
    config: Any  # a DistillConfig subclass

    def __init__(self, cfg: dict[str, Any], num_classes: int, total_steps: int, *,
                 teacher_members: int | None = None) -> None:
        super().__init__(cfg, num_classes, total_steps, teacher_members=teacher_members)
        check_aekd_cap(getattr(self.config, "aekd_cap", None), teacher_members)  # C >= 1/M
        if getattr(self.config, "members", 0) is None and teacher_members is not None:
            self.config = dataclasses.replace(self.config, members=int(teacher_members))
        # perturbed inputs need teacher targets on the perturbed batch
        self.needs_online_teacher = self.config.perturbation != "none"  # type: ignore[misc]
        self._gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)) + 4242)
        self._last_weights: torch.Tensor | None = None

    def resolved_members(self) -> int:
        """``method_args.members``, or (when null) the teacher's member count passed at construction."""
        m = self.config.members
        if m is None:
            raise ConfigError(f"method_args.members is null (one per teacher member) but {self.name!r} was built "
                              "without a teacher: set method_args.members or distill.teacher")
        return int(m)

    # ---- perturbation --------------------------------------------------------------------------
    def perturb(self, x: torch.Tensor, *, student: nn.Module, teacher: nn.Module | None, step: int) -> torch.Tensor:
        c = self.config
        if c.perturbation == "none" or teacher is None:
            return x
        # the RNG is re-seeded from the step, so a resumed run draws the same perturbations
        self._gen.manual_seed(int(self.cfg.get("seed", 0)) * 1_000_003 + step)
        return perturb(c.perturbation, x, differentiable_teacher(teacher), student, c.perturbation_gamma,
                       c.perturbation_temperature, generator=self._gen)

    # ---- losses --------------------------------------------------------------------------------
    def distill_loss(self, out: torch.Tensor, tlp: torch.Tensor, objective: str) -> torch.Tensor:
        """``kd``: each member vs the (AE-KD weighted) ensemble mean; ``head``: member m vs teacher m."""
        t = self.config.temperature
        if objective == "head":
            if out.dim() != 3 or out.shape[1] != tlp.shape[1]:
                raise ConfigError(
                    f"objective=head needs one student member per teacher: student {tuple(out.shape[1:-1])} "
                    f"members vs {tlp.shape[1]} teachers (set method_args.members or distill.teacher_members)"
                )
            return hydra_loss(out, tlp, temperature=t)
        cap = getattr(self.config, "aekd_cap", None)
        if cap is not None:
            loss, w = aekd_loss(out, tlp, temperature=t, cap=cap)
            self._last_weights = w.detach()
            return loss
        if out.dim() == 3:  # every member matches the ensemble mean
            return ensemble_kd_loss(out, tlp.unsqueeze(1).expand(-1, out.shape[1], -1, -1), temperature=t)
        return ensemble_kd_loss(out, tlp, temperature=t)

    def log_values(self, step: int) -> dict[str, float]:  # type: ignore[override]
        vals = {"distill/temperature": self.config.temperature}
        if self._last_weights is not None:
            vals.update({f"aekd/weight_{m}": float(v) for m, v in enumerate(self._last_weights)})
        return vals
