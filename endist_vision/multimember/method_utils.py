"""Helpers of the multi-member methods that need no method class: a differentiable view of the
teacher ensemble, the teacher's member count, and the ``NormalizedModel`` wrapping of a new raw network.
The methods' base class lives in ``endist_vision/methods/_multimember.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from endist_vision.errors import ConfigError
from endist_vision.models.registry import NormalizedModel


def differentiable_teacher(teacher: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x → [B, M, K]`` teacher logits *with* gradients w.r.t. ``x``.

    ``endist_vision.teacher.TeacherEnsemble.forward`` runs under ``torch.no_grad`` (right for targets),
    so input-gradient perturbations call its member models directly, keeping its member cut.
    """
    models = getattr(teacher, "models", None)
    if models is None:
        return teacher
    members = getattr(teacher, "members", None)

    def forward(x: torch.Tensor) -> torch.Tensor:
        outs = [o.unsqueeze(1) if o.dim() == 2 else o for o in (m(x) for m in models)]
        out = torch.cat(outs, dim=1)
        return out[:, :members] if members else out

    return forward


def teacher_member_count(cfg: dict[str, Any]) -> int:
    """Number of teacher members M: ``distill.teacher_members`` or the teachers' saved ``num_members``."""
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


def wrap_like(template: nn.Module, net: nn.Module) -> nn.Module:
    """Put ``net`` inside the same input normalisation as ``template`` (a ``NormalizedModel``)."""
    if isinstance(template, NormalizedModel):
        return NormalizedModel(net, template.mean.tolist(), template.std.tolist())
    return net


def raw_net(model: nn.Module) -> nn.Module:
    """The network inside a ``NormalizedModel`` (or the model itself)."""
    return model.net if isinstance(model, NormalizedModel) else model
