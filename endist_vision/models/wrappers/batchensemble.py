"""BatchEnsemble network: any Linear/Conv2d network whose layers are BatchEnsemble layers
(:mod:`endist_vision.models.layers.batchensemble`, [BE] eq. 2) run as an M-member student.

``forward(x [B, ...]) → [B, M, K]``: the input is repeated member-major, the body runs once on ``M·B``
rows and the output is reshaped with ``members_to_batch_major``.  :meth:`BatchEnsembleNet.member`
returns member m alone as a plain network (weights ``W ∘ r_m s_mᵀ``, bias ``b_m``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from endist_vision.models.layers.batchensemble import (
    FastInit,
    Mode,
    be_layers,
    convert_to_batchensemble,
    members_to_batch_major,
    repeat_members,
    replace_with_plain,
)


class BatchEnsembleNet(nn.Module):
    """Wrap a network whose Linear/Conv2d layers are BE layers into an M-member student.

    ``forward(x [B, ...]) → [B, M, K]``: repeats the input member-major, runs the body once on
    ``M·B`` rows, and reshapes with :func:`members_to_batch_major`.  In ``averaged`` mode (see
    :meth:`set_mode`) it returns ``[B, K]`` computed with weight-averaged factors *through* the
    factored layers — the reference that :func:`endist_vision.models.wrappers.latentbe.merge_to_single`
    must reproduce.
    """

    def __init__(self, body: nn.Module, ensemble_size: int) -> None:
        super().__init__()
        self.body = body
        self.ensemble_size = ensemble_size
        self.mode: Mode = "ensemble"
        sizes = {layer.ensemble_size for layer in be_layers(body)}
        if sizes and sizes != {ensemble_size}:
            raise ValueError(f"body has BE layers of ensemble sizes {sorted(sizes)}, expected {ensemble_size}")

    @classmethod
    def from_plain(
        cls, model: nn.Module, ensemble_size: int, fast_init: FastInit = "random_sign",
        fast_prior: float = 0.0, init_std: float = 0.5, copy_weights: bool = True,
    ) -> "BatchEnsembleNet":
        """BE version of any plain Linear/Conv2d network (see :func:`convert_to_batchensemble`)."""
        body = convert_to_batchensemble(model, ensemble_size, fast_init, fast_prior, init_std, copy_weights)
        return cls(body, ensemble_size)

    @property
    def num_members(self) -> int:
        """Members in the output: M in ``ensemble`` mode, 1 in ``averaged`` mode."""
        return self.ensemble_size if self.mode == "ensemble" else 1

    def set_mode(self, mode: Mode) -> "BatchEnsembleNet":
        """``"ensemble"`` (M members, ``[B, M, K]``) or ``"averaged"`` (factor-averaged, ``[B, K]``)."""
        if mode not in ("ensemble", "averaged"):
            raise ValueError(f"mode must be 'ensemble' or 'averaged', got {mode!r}")
        self.mode = mode
        for layer in be_layers(self.body):
            layer.mode = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "averaged":
            return self.body(x)
        y = self.body(repeat_members(x, self.ensemble_size))
        return members_to_batch_major(y, self.ensemble_size)

    def member(self, m: int) -> nn.Module:
        """Member ``m`` alone as a plain network: every BE layer becomes the ``nn.Linear``/``nn.Conv2d``
        with weight ``W ∘ r_m s_mᵀ`` and bias ``b_m`` (shared batch norm and other layers copied).

        ``member(m)(x)`` equals ``self(x)[:, m]`` in evaluation mode; the BE network is not modified.
        """
        if not 0 <= m < self.ensemble_size:
            raise IndexError(f"member {m} out of range for {self.ensemble_size} members")
        body = copy.deepcopy(self.body)
        with torch.no_grad():
            for layer in be_layers(body):  # every row := member m, so the factor average is member m
                for p in (layer.fast_r, layer.fast_s, layer.member_bias):
                    if p is not None:
                        p.copy_(p[m:m + 1].clone().expand_as(p))
        return replace_with_plain(body).train(self.training)
