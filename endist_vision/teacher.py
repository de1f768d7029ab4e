"""Teacher ensembles for distillation: one or more finished run directories whose outputs are
concatenated along the member axis, giving logits ``[B, M, K]``; optionally the first N members only.

Teacher predictions are either *cached* once on the unaugmented transfer inputs ([EnD2] App. A: the
student sees augmented inputs, the targets come from the clean ones), computed *online* on the
student's batch, or compressed once into the memory-mapped on-disk cache of ``topk_cache``
(:mod:`endist_vision.topk_cache`), after which the teachers are released."""

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


def teacher_sources(spec: Any, flag: str = "distill.teacher") -> list[str | dict[str, Any]]:
    """``distill.teacher`` as a flat list of run directories and external entries (YAML teacher files expanded)."""
    from .external_teacher import is_teacher_file, read_teacher_file

    items = [spec] if isinstance(spec, (str, dict)) else list(spec)
    out: list[str | dict[str, Any]] = []
    for item in items:
        out += read_teacher_file(item, flag) if is_teacher_file(item) else [item]
    return out


def load_teacher(distill_cfg: dict[str, Any], num_classes: int, data_name: str, data: Any = None) -> TeacherEnsemble:
    """Load ``distill.teacher``: run dirs, external ``{model, kwargs, weights}`` entries (needs ``data``, the
    :class:`~endist_vision.data.base.DataBundle`, for their input size and normalisation) or YAML files of such
    entries (:mod:`endist_vision.external_teacher`); check every member predicts ``num_classes``."""
    from .external_teacher import load_external_teacher

    spec = distill_cfg.get("teacher")
    if not spec:
        raise ConfigError("distill.teacher is required for this method (a finished ensemble/individual run directory)")
    models = []
    for i, d in enumerate(teacher_sources(spec)):
        if isinstance(d, dict):
            if data is None:
                raise ConfigError(f"distill.teacher[{i}]: an external teacher needs the data set")
            models.append(load_external_teacher(d, f"distill.teacher[{i}]", num_classes, int(data.in_channels),
                                                tuple(data.test.input_shape), list(data.mean), list(data.std)))
            continue
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
