"""``latentbe``: LatentBE — a BE student with r = s = 1 and a prior toward 1, merged after training
into one plain network ([LatentBE] §3.1, Alg. 2, eq. 5).

* Student as ``batchensemble`` but ``r_m = s_m = 1`` at start (Alg. 2 line 1) and the fast-weight
  group's weight decay ``fast_weight_decay`` = λ pulls them back to 1 (Alg. 2 line 8).
* Default objective ``head`` (one-to-one, Alg. 2 line 7); ``kd`` and AE-KD also available.
* ``post_train``: ``merge_to_single`` — W ∘ mean_m r_m s_mᵀ, mean_m b_m; the final checkpoint is the
  plain ``model.name`` network (single-model inference cost), evaluated as a single categorical model.
  With ``merge: false`` the BE student is kept.  Networks with batch norm get their running
  statistics re-estimated on the last ``bn_recalibration_batches`` training batches after merging.
* Use ``perturbation: tdiv_sdiv`` for the full Alg. 2.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from endist_vision.models.wrappers.latentbe import merge_to_single, recalibrate_batchnorm

from . import register_method
from .batchensemble import BatchEnsemble, BEStudentConfig


@dataclass
class LatentBEConfig(BEStudentConfig):
    objective: Literal["kd", "head"] = "head"  # one-to-one by default ([LatentBE] Alg. 2 line 7)
    fast_weight_decay: float = 1.0e-3  # λ of the prior r, s ~ N(1, 1/λ)
    merge: bool = True  # merge the members into one plain network after training
    bn_recalibration_batches: int = 20  # re-estimate BN statistics of the merged network on the last N batches


@register_method("latentbe")
class LatentBE(BatchEnsemble):
    config_class = LatentBEConfig
    config: LatentBEConfig
    fast_prior = 1.0

    def __init__(self, cfg, num_classes, total_steps, *, teacher_members=None):  # type: ignore[no-untyped-def]
        super().__init__(cfg, num_classes, total_steps, teacher_members=teacher_members)
        self._recent: deque[torch.Tensor] = deque(maxlen=max(self.config.bn_recalibration_batches, 0) or 1)

    def fast_init(self) -> str:
        return "ones"

    def forward(self, model, x):  # type: ignore[no-untyped-def]
        if model.training and self.config.bn_recalibration_batches > 0:
            self._recent.append(x.detach())
        return model(x)

    def post_train(self, model: nn.Module) -> nn.Module:
        if not self.config.merge:
            return model
        merged = merge_to_single(model).eval()
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in merged.modules())
        if has_bn and self.config.bn_recalibration_batches > 0 and self._recent:
            recalibrate_batchnorm(merged, list(self._recent))
        return merged

    def build_final(self, make_model: Callable[[int], nn.Module]) -> nn.Module:
        if not self.config.merge:
            return self.build_student(make_model)
        return make_model(int(self.cfg["seed"]))  # the merged network is the plain architecture
