"""Teacher ensembles for distillation: one or more finished run directories whose outputs are
concatenated along the member axis, giving logits ``[B, M, K]``; optionally the first N members only.

Teacher predictions are either *cached* once on the unaugmented transfer inputs ([EnD2] App. A: the
student sees augmented inputs, the targets come from the clean ones) or computed *online* on the
student's batch."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .checkpoint import load_run_model
from .errors import ConfigError


class TeacherEnsemble(nn.Module):
    """Frozen teachers in eval mode; ``forward(x) -> logits [B, M, K]``."""

    def __init__(self, models: list[nn.Module], members: int | None = None) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.members = members
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "TeacherEnsemble":  # teachers stay in eval mode
        return super().train(False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Members' logits ``[B, M, K]`` (concatenated along M, first ``members`` kept), with gradients
        w.r.t. ``x`` (the parameters are frozen)."""
        outs = [o.unsqueeze(1) if o.dim() == 2 else o for o in (m(x) for m in self.models)]
        out = torch.cat(outs, dim=1)
        return out[:, : self.members] if self.members else out

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher targets: :meth:`logits` without gradients."""
        return self.logits(x)

    @property
    def num_members(self) -> int:
        with torch.no_grad():
            return sum(getattr(m, "num_members", 1) for m in self.models) if not self.members else int(self.members)


def differentiable_teacher(teacher: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x → [B, M, K]`` teacher logits *with* gradients w.r.t. ``x`` (for input-gradient perturbations):
    :meth:`TeacherEnsemble.logits` for a teacher ensemble, any other module as it is."""
    return teacher.logits if isinstance(teacher, TeacherEnsemble) else teacher


def load_teacher(distill_cfg: dict[str, Any], num_classes: int, data_name: str) -> TeacherEnsemble:
    """Load ``distill.teacher`` (a run dir or list of run dirs); check it predicts ``num_classes``."""
    spec = distill_cfg.get("teacher")
    if not spec:
        raise ConfigError("distill.teacher is required for this method (a finished ensemble/individual run directory)")
    dirs = [spec] if isinstance(spec, str) else list(spec)
    models = []
    for d in dirs:
        model, meta, cfg = load_run_model(d, flag="distill.teacher")
        if int(meta["num_classes"]) != num_classes:
            raise ConfigError(
                f"distill.teacher={d}: teacher predicts {meta['num_classes']} classes "
                f"(trained on {cfg['data']['name']!r}) but data set {data_name!r} has {num_classes}"
            )
        if meta.get("output") == "dirichlet":
            raise ConfigError(f"distill.teacher={d}: a Dirichlet ({cfg['method']}) student cannot be a teacher ensemble")
        models.append(model)
    n = distill_cfg.get("teacher_members")
    teacher = TeacherEnsemble(models, int(n) if n else None)
    return teacher
