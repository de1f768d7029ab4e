"""Base class of the multi-member methods (``hydra``, ``batchensemble``, ``latentbe``, ``aekd``; issue #6).

Private module (leading underscore: not auto-registered).  :class:`MultiMemberMethod` adds to
:class:`endist_vision.methods.Method`:

* the perturbation options (``perturbation: none|gaussian|ods|confods|tdiv_sdiv``,
  ``perturbation_gamma``, ``perturbation_temperature``) applied to the raw [0, 1] batch before the
  distillation loss (:mod:`endist_vision.multimember.perturbations`); when one is active the teacher
  runs online on the perturbed batch;
* the distillation objectives ``kd`` (every student member matches the ensemble mean,
  ``shared.losses.ensemble_kd_loss``; with ``aekd_cap`` set, the AE-KD weighted mean) and ``head``
  (member m matches teacher m, ``shared.losses.hydra_loss``);
* resolving the number of student members from the teacher when ``members`` is null (the value is
  written back into ``cfg["method_args"]`` so the saved run config is explicit).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from endist_vision.errors import ConfigError
from endist_vision.perturbations import PERTURBATIONS, perturb
from endist_vision.teacher import differentiable_teacher
from shared.losses import aekd_loss, ensemble_kd_loss, hydra_loss

from .base import Method


def teacher_member_count(cfg: dict[str, Any]) -> int:
    from pathlib import Path

    from endist_vision.checkpoint import load_checkpoint

    d = cfg.get("distill") or {}
    if d.get("teacher_members"):
        return int(d["teacher_members"])
    spec = d.get("teacher")
    if not spec:
        raise ConfigError("distill.teacher is required for this method (a finished ensemble run directory)")
    total = 0
    for run in [spec] if isinstance(spec, str) else list(spec):
        total += int(load_checkpoint(Path(run) / "checkpoints" / "final.pt")["meta"].get("num_members", 1))
    return total

PERTURBATION_DEFAULTS: dict[str, Any] = {
    "perturbation": "none",
    "perturbation_gamma": 1.0,
    "perturbation_temperature": 1.0,
}


def check_aekd_cap(cfg: dict[str, Any], cap: float) -> None:
    """Reject an AE-KD cap outside [1/M, 1] before training starts (M from the teacher when it exists)."""
    if not 0 < cap <= 1:
        raise ConfigError(f"method_args.aekd_cap must be in (0, 1], got {cap}")
    try:
        m = teacher_member_count(cfg)
    except Exception:  # noqa: BLE001 - no readable teacher yet: the trainer reports that itself
        return
    if cap * m < 1 - 1e-12:
        raise ConfigError(f"method_args.aekd_cap={cap} is infeasible for {m} teacher members: need >= 1/M = {1 / m:.4f}")


class MultiMemberMethod(Method):
    """Shared options of the multi-member methods (see module docstring)."""

    needs_teacher = True

    def __init__(self, cfg: dict[str, Any], num_classes: int, total_steps: int) -> None:
        super().__init__(cfg, num_classes, total_steps)
        kind = self.args.get("perturbation", "none")
        if kind not in PERTURBATIONS:
            raise ConfigError(f"method_args.perturbation must be one of {'|'.join(PERTURBATIONS)}, got {kind!r}")
        if float(self.args.get("perturbation_gamma", 1.0)) < 0:
            raise ConfigError(f"method_args.perturbation_gamma must be >= 0, got {self.args['perturbation_gamma']}")
        if float(self.args.get("temperature", 1.0)) <= 0:
            raise ConfigError(f"method_args.temperature must be > 0, got {self.args['temperature']}")
        # perturbed inputs need teacher targets on the perturbed batch
        self.needs_online_teacher = kind != "none"  # type: ignore[misc]
        self._gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)) + 4242)

    # ---- members -------------------------------------------------------------------------------
    def resolve_members(self, key: str = "members") -> int:
        """``method_args[key]`` or, if null, the teacher's member count (written back into the config)."""
        m = self.args.get(key)
        if m is None:
            m = teacher_member_count(self.cfg)
            self.args[key] = m
            self.cfg.setdefault("method_args", {})
            self.cfg["method_args"][key] = m
        m = int(m)
        if m < 1:
            raise ConfigError(f"method_args.{key} must be >= 1, got {m}")
        return m

    # ---- perturbation --------------------------------------------------------------------------
    def perturb(self, x: torch.Tensor, *, student: nn.Module, teacher: nn.Module | None, step: int) -> torch.Tensor:
        kind = self.args.get("perturbation", "none")
        if kind == "none" or teacher is None:
            return x
        # the RNG is re-seeded from the step, so a resumed run draws the same perturbations
        self._gen.manual_seed(int(self.cfg.get("seed", 0)) * 1_000_003 + step)
        return perturb(kind, x, differentiable_teacher(teacher), student, float(self.args["perturbation_gamma"]),
                       float(self.args["perturbation_temperature"]), generator=self._gen)

    # ---- losses --------------------------------------------------------------------------------
    def distill_loss(self, out: torch.Tensor, tlp: torch.Tensor, objective: str) -> torch.Tensor:
        """``kd``: each member vs the (AE-KD weighted) ensemble mean; ``head``: member m vs teacher m."""
        t = float(self.args["temperature"])
        if objective == "head":
            if out.dim() != 3 or out.shape[1] != tlp.shape[1]:
                raise ConfigError(
                    f"objective=head needs one student member per teacher: student {tuple(out.shape[1:-1])} "
                    f"members vs {tlp.shape[1]} teachers (set method_args.members or distill.teacher_members)"
                )
            return hydra_loss(out, tlp, temperature=t)
        if objective != "kd":
            raise ConfigError(f"method_args.objective must be kd|head, got {objective!r}")
        cap = self.args.get("aekd_cap")
        if cap is not None:
            loss, w = aekd_loss(out, tlp, temperature=t, cap=float(cap))
            self._last_weights = w.detach()
            return loss
        if out.dim() == 3:  # every member matches the ensemble mean
            return ensemble_kd_loss(out, tlp.unsqueeze(1).expand(-1, out.shape[1], -1, -1), temperature=t)
        return ensemble_kd_loss(out, tlp, temperature=t)

    def log_values(self, step: int) -> dict[str, float]:  # type: ignore[override]
        vals = {"distill/temperature": float(self.args["temperature"])}
        w = getattr(self, "_last_weights", None)
        if w is not None:
            vals.update({f"aekd/weight_{m}": float(v) for m, v in enumerate(w)})
        return vals
