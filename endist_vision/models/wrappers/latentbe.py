"""LatentBE: a BatchEnsemble student whose rank-one factors are averaged after training ([LatentBE] §3.1, Alg. 2).

* Initialisation (Alg. 2 line 1): ``r_m = s_m = 1`` for all members.
* Prior (§3.1, Alg. 2 line 8): ``r_m, s_m ~ N(1, 1/λ)``, i.e. the update
  ``r_m ← r_m − η∇ℓ_m − ηλ(r_m − 1)``.  Implemented by storing ``r = 1 + fast_r`` and giving the
  fast-weight parameter group a plain weight decay ``λ`` (decays ``fast_r`` to 0, hence ``r`` to 1);
  the ``latentbe`` method scales the fast-weight gradients by M so that they are ∇ℓ_m, not the
  (1/M)∇ℓ_m of the member-mean loss (``endist_vision.methods.latentbe``).
* Merge (Alg. 2 line 12, eq. 5): ``θ ← θ ∘ (1/M) Σ_m r_m s_mᵀ`` per layer and ``b ← (1/M) Σ_m b_m``.
  The result is the original plain network class (``nn.Conv2d``/``nn.Linear`` layers), i.e. exactly
  single-model inference cost.

Batch norm: BE networks here share their BatchNorm layers across members, so the merged network
keeps them unchanged; its evaluation-mode output equals the BE network evaluated in ``averaged``
mode (factor-averaged layers, same BN statistics) to numerical precision.  This is what [LatentBE]
Alg. 2 line 12 returns and what the authors' code evaluates (cs-giung/distill-latentbe: ``step_val``
averages r and s and keeps ``batch_stats``).  The running statistics were gathered on member
activations, not on the averaged ones; :func:`recalibrate_batchnorm` re-estimates them on training
batches (as in SWA's ``bn_update``) when asked (``latentbe`` method: opt-in
``bn_recalibration_batches``); the equality above then no longer holds.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from endist_vision.models.registry import NormalizedModel
from endist_vision.models.layers.batchensemble import replace_with_plain
from endist_vision.models.wrappers.batchensemble import BatchEnsembleNet


def latentbe_student(model: nn.Module, ensemble_size: int) -> BatchEnsembleNet:
    """LatentBE student from a plain network: shared weights copied, ``r = s = 1``, prior mean 1."""
    return BatchEnsembleNet.from_plain(model, ensemble_size, fast_init="ones", fast_prior=1.0)


def merge_to_single(model: nn.Module) -> nn.Module:
    """Weight-average the members of a BE network into one plain network ([LatentBE] eq. 5).

    Returns a new module (the wrapped body with each BE layer replaced by ``nn.Conv2d``/``nn.Linear``
    holding ``W ∘ mean_m r_m s_mᵀ`` and ``mean_m b_m``; BatchNorm and all other layers copied) that
    maps ``[B, ...] → [B, K]``.  The BE network itself is not modified.  A ``NormalizedModel``
    wrapping a BE network gives a ``NormalizedModel`` wrapping the merged network.
    """
    if isinstance(model, NormalizedModel):
        merged_net = merge_to_single(model.net)
        out = NormalizedModel(merged_net, model.mean.tolist(), model.std.tolist())
        return out.to(model.mean.device).train(model.training)
    if not isinstance(model, BatchEnsembleNet):
        raise ValueError(f"merge_to_single needs a BatchEnsembleNet, got {type(model).__name__}")
    merged = replace_with_plain(model.body)
    merged.train(model.training)
    return merged


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running mean/variance on ``batches`` (cumulative average).

    Returns the number of batches used; leaves the model in evaluation mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        model.eval()
        return 0
    momenta = {bn: bn.momentum for bn in bns}
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the given batches
    model.train()
    n = 0
    for x in batches:
        model(x)
        n += 1
    for bn in bns:
        bn.momentum = momenta[bn]
    model.eval()
    return n
