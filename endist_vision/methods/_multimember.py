"""Shared base of the distillation methods with multi-member students or input perturbations
(``hydra``, ``batchensemble``, ``latentbe``, ``aekd``; issue #6).

Private module (leading underscore: not auto-registered).  :class:`MultiMemberMethod` adds to
:class:`endist_vision.methods.Method`:

* the perturbation options of :class:`DistillConfig` (``perturbation: none|gaussian|ods|confods|tdiv_sdiv``,
  ``perturbation_gamma`` γ, ``perturbation_temperature`` (null: for ODS/ConfODS the distillation
  temperature τ, as p_T(x; τ) in [LatentBE] eq. 35 and the Diversity-Matters code; for TDiv−SDiv T = 1,
  as the untempered p_T(x), p_S(x) of eqs. 13–14 and the authors' ``loss_fn_perturb`` on the raw
  log-confidences), ``confods_confidence``, ``tdiv_shared_pair``) applied to the raw
  [0, 1] batch before the distillation loss (:mod:`endist_vision.perturbations`); when one is active the
  teacher runs online on the perturbed batch;
* ``perturbation_inputs: clean_and_perturbed``: the batch becomes ``[x; x̃]`` (2B rows, one student
  forward); the cross-entropy term is taken on the clean rows and the distillation loss on the
  perturbed ones, as in the Diversity-Matters reference code (cs-giung/giung2
  ``projects/Diversity-Matters/scripts/train_student.py``: ``loss_ce`` on ``model(images)``, ``loss_kd``
  on ``model(images_eps)``; there two forward passes, so BatchNorm batch statistics are per half, here
  over both halves).  Default ``perturbed``: both terms on x̃, as the LatentBE code
  (cs-giung/distill-latentbe ``train_KD_LatentBE_TDivSDiv.py`` replaces the images by the perturbed ones);
* the cross-entropy mix of [LatentBE] eq. 26, ``L = (1 − ce_weight)·L_distill + ce_weight·CE``
  (``ce_weight`` = 1 − α; 0 = pure distillation, the default), added around every subclass's ``loss``
  (:meth:`MultiMemberMethod.loss`, :mod:`endist_vision.methods._labels`);
* the distillation objectives ``kd`` (every student member matches the ensemble mean,
  ``shared.losses.ensemble_kd_loss``; with ``aekd_cap`` set, the AE-KD weighted mean,
  ``shared.losses.aekd_loss``) and ``head`` (member m matches teacher m, ``shared.losses.hydra_loss``);
* :meth:`MultiMemberMethod.resolved_members`: ``members: null`` = one student member per teacher member,
  from the ``teacher_members`` the trainer passes (the resolved value is saved in the checkpoint meta).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from endist_vision.errors import ConfigError
from endist_vision.perturbations import ConfidenceSource, PerturbationKind, perturb
from endist_vision.teacher import differentiable_teacher
from shared.losses import aekd_loss, ensemble_kd_loss, hydra_loss

from ._labels import check_ce_weight, mix_ce
from .base import Method

@dataclass
class DistillConfig:
    """Options common to every multi-member method."""

    temperature: float = 2.5  # distillation temperature T
    ce_weight: float = 0.0  # 1 − α of [LatentBE] eq. 26: weight of the label cross-entropy (0: pure distillation)
    perturbation: PerturbationKind = "none"  # input perturbation ([LatentBE] §3.2)
    perturbation_gamma: float = 1.0  # ‖δ‖₂ = γ·√D/255
    perturbation_temperature: float | None = None  # T of the perturbation objective; null: τ for ODS (eq. 35), 1 for TDiv−SDiv (eqs. 13–14)
    confods_confidence: ConfidenceSource = "teacher"  # ConfODS scale: chosen teacher at τ | ensemble mean at T=1
    tdiv_shared_pair: bool = True  # TDiv−SDiv: one (i, j) for teachers and student (Alg. 2 line 4)
    perturbation_inputs: Literal["perturbed", "clean_and_perturbed"] = "perturbed"  # CE on x, distill on x̃

    def __post_init__(self) -> None:
        if self.perturbation_gamma < 0:
            raise ConfigError(f"method_args.perturbation_gamma must be >= 0, got {self.perturbation_gamma}")
        if self.temperature <= 0:
            raise ConfigError(f"method_args.temperature must be > 0, got {self.temperature}")
        if self.perturbation_temperature is not None and self.perturbation_temperature <= 0:
            raise ConfigError(f"method_args.perturbation_temperature must be > 0 or null, got {self.perturbation_temperature}")
        check_ce_weight(self.ce_weight)
        if self.perturbation_inputs == "clean_and_perturbed" and self.perturbation == "none":
            raise ConfigError("method_args.perturbation_inputs=clean_and_perturbed needs a method_args.perturbation "
                              "(gaussian|ods|confods|tdiv_sdiv)")

    @property
    def effective_perturbation_temperature(self) -> float:
        """Temperature of the perturbation objective: ``perturbation_temperature`` if set, else the
        distillation τ for ODS/ConfODS (p_T(x; τ), [LatentBE] eq. 35) and 1 for TDiv−SDiv (eqs. 13–14)."""
        if self.perturbation_temperature is not None:
            return self.perturbation_temperature
        return 1.0 if self.perturbation == "tdiv_sdiv" else self.temperature


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
    _clean_rows: int | None = None  # B when the last perturb() returned [x; x̃]

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

    # ---- loss ----------------------------------------------------------------------------------
    def loss(self, student_out: torch.Tensor, teacher_log_probs: torch.Tensor | None, step: int, *,
             labels: torch.Tensor | None = None) -> torch.Tensor:
        """L = (1 − w)·:meth:`distillation_loss` + w·CE(y) ([LatentBE] eq. 26, ``w = ce_weight``). When the last
        :meth:`perturb` returned ``[x; x̃]`` (``perturbation_inputs: clean_and_perturbed``) the CE is taken on the
        clean half and the distillation loss on the perturbed half."""
        ce_out = student_out
        b = self._clean_rows
        if b is not None and student_out.shape[0] == 2 * b:
            ce_out, student_out = student_out[:b], student_out[b:]
            if teacher_log_probs is not None and teacher_log_probs.shape[0] == 2 * b:
                teacher_log_probs = teacher_log_probs[b:]
        value = self.distillation_loss(student_out, teacher_log_probs, step, labels=labels)
        return mix_ce(value, self.config.ce_weight, ce_out, labels)

    def distillation_loss(self, student_out: torch.Tensor, teacher_log_probs: torch.Tensor | None, step: int, *,
                          labels: torch.Tensor | None = None) -> torch.Tensor:
        """The method's own distillation term (batch mean); every multi-member method defines it."""
        raise NotImplementedError

    # ---- perturbation --------------------------------------------------------------------------
    def perturb(self, x: torch.Tensor, *, student: nn.Module, teacher: nn.Module | None, step: int) -> torch.Tensor:
        c = self.config
        self._clean_rows = None
        if c.perturbation == "none" or teacher is None:
            return x
        # the RNG is re-seeded from the step, so a resumed run draws the same perturbations
        self._gen.manual_seed(int(self.cfg.get("seed", 0)) * 1_000_003 + step)
        xt = perturb(c.perturbation, x, differentiable_teacher(teacher), student, c.perturbation_gamma,
                     c.effective_perturbation_temperature, generator=self._gen,
                     confidence_source=c.confods_confidence, shared_pair=c.tdiv_shared_pair)
        if c.perturbation_inputs == "clean_and_perturbed":
            self._clean_rows = int(x.shape[0])
            return torch.cat([x.detach(), xt], dim=0)
        return xt

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
