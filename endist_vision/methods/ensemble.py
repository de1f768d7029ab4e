"""``ensemble``: M members with different initialisation seeds and different data shuffles, trained
in one loop ([EnD2] App. A). Each member sees its own stream of batches (``num_streams = M``); small
members without batch norm are evaluated in one vectorised ``torch.func`` call.

The loss is the *sum* over members of each member's mean cross-entropy, so each member's gradient
equals that of training it alone (members share no parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models import build_ensemble
from . import Method, register_method


@dataclass
class EnsembleConfig:
    members: int = 5  # M
    vectorize: Literal["auto"] | bool = "auto"  # StackedEnsemble (vmap) / ModuleEnsemble; auto: vmap without batch norm

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ConfigError(f"method_args.members must be >= 1, got {self.members}")


@register_method("ensemble")
class Ensemble(Method):
    config_class = EnsembleConfig
    config: EnsembleConfig

    def build_student(self, make_model: Callable[[int], nn.Module]) -> nn.Module:
        seed = int(self.cfg["seed"])
        return build_ensemble(lambda i: make_model(seed + 1000 * i), self.config.members, self.config.vectorize)

    @property
    def num_streams(self) -> int:
        return self.config.members

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model.forward_members(x)  # x [M, B, ...] -> [B, M, K]

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        # student_out [B, M, K], labels [M, B]
        b, m, k = student_out.shape
        ce = F.cross_entropy(student_out.float().reshape(b * m, k), labels.t().reshape(b * m), reduction="none")
        return ce.view(b, m).mean(0).sum()
