"""BatchEnsemble network: any Linear/Conv2d network whose layers are BatchEnsemble layers
(:mod:`endist_vision.models.layers.batchensemble`, [BE] eq. 2) run as an M-member student.

``forward(x [B, ...]) → [B, M, K]``: the input is repeated member-major, the body runs once on ``M·B``
rows and the output is reshaped with ``members_to_batch_major`` — the reference path; by default
(:meth:`BatchEnsembleNet.set_fast_path`) the body runs batch-major with the factors folded into the member
weights (:mod:`endist_vision.models.layers.grouped`), same values.  :meth:`BatchEnsembleNet.member`
returns member m alone as a plain network (weights ``W ∘ r_m s_mᵀ``, bias ``b_m``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from endist_vision.models.layers.batchensemble import (
    BE_LAYERS,
    BN_TYPES,
    EnsembleBatchNorm,
    FastInit,
    Mode,
    be_layers,
    convert_to_batchensemble,
    factorize_ensemble,
    members_to_batch_major,
    repeat_members,
    replace_with_plain,
)
from endist_vision.models.layers.grouped import cpu_eval_chunks, frozen_weights, to_batch_major


def _any_training(model: nn.Module) -> bool:
    return any(mod.training for mod in model.modules())


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
        self.set_fast_path(True)

    def set_fast_path(self, enabled: bool = True) -> "BatchEnsembleNet":
        """``True`` (the default): the body runs batch-major with the rank-one factors folded into the member
        weights, ``conv(x; W ∘ r_m s_mᵀ)`` as one grouped convolution (:mod:`endist_vision.models.layers.grouped`),
        and on the CPU a large evaluation-mode batch is cut into chunks (:func:`~endist_vision.models.layers.grouped.cpu_eval_chunks`:
        the allocator then reuses its blocks instead of mapping fresh pages per layer).
        ``False``: the member-major reference, ``r_m ∘ conv(s_m ∘ x; W)`` on ``M·B`` rows ([BE] eq. 2 as written).
        Same values up to rounding; parameters and state dict are identical."""
        self.fast_path = bool(enabled)
        for mod in self.body.modules():
            if isinstance(mod, (*BE_LAYERS, EnsembleBatchNorm)):
                mod.batch_major = self.fast_path
        return self

    @classmethod
    def from_plain(
        cls, model: nn.Module, ensemble_size: int, fast_init: FastInit = "random_sign",
        fast_prior: float = 0.0, init_std: float = 0.5, copy_weights: bool = True, member_bn: bool = False,
    ) -> "BatchEnsembleNet":
        """BE version of any plain Linear/Conv2d network (see :func:`convert_to_batchensemble`);
        ``member_bn``: one BatchNorm per member."""
        body = convert_to_batchensemble(model, ensemble_size, fast_init, fast_prior, init_std, copy_weights, member_bn)
        return cls(body, ensemble_size)

    @torch.no_grad()
    def init_from_members(self, members: list[nn.Module], iters: int = 50) -> "BatchEnsembleNet":
        """BE+INIT of [BE] §4 (Tables 1–2): set this network from ``M`` plain networks of its architecture
        (e.g. the deep-ensemble teachers). Every BE layer gets the rank-one reconstruction of the members'
        weights (:func:`factorize_ensemble`, [BE] §2 footnote 1: ``min Σ_i ‖W₀ ∘ R_i − W_i‖²``, ALS):
        ``weight = W₀``, ``r_i``, ``s_i`` (stored as offsets from the prior), ``b_i`` = member i's bias. BatchNorm:
        per-member BatchNorms (``member_bn``) copy member i's; a shared one gets the members' mean parameters and
        running statistics (the paper does not say; our choice). Other parameters: the members' mean."""
        if len(members) != self.ensemble_size:
            raise ValueError(f"init_from_members: {len(members)} networks for {self.ensemble_size} members")
        subs = [dict(m.named_modules()) for m in members]
        per_member = [n + "." for n, m in self.body.named_modules() if isinstance(m, EnsembleBatchNorm)]
        for name, mod in self.body.named_modules():
            if any(name.startswith(pre) for pre in per_member):
                continue  # the BatchNorms inside an EnsembleBatchNorm (set with it)
            if any(name not in d for d in subs):
                raise ValueError(f"init_from_members: the members have no module {name!r} (different architecture)")
            plain = [d[name] for d in subs]
            if hasattr(mod, "fast_r"):
                w0, r, s = factorize_ensemble(torch.stack([p.weight.detach() for p in plain]), iters)
                mod.weight.copy_(w0)
                mod.fast_r.copy_(r - mod.fast_prior)
                mod.fast_s.copy_(s - mod.fast_prior)
                if mod.member_bias is not None:
                    mod.member_bias.copy_(torch.stack([p.bias.detach() for p in plain]))
            elif isinstance(mod, EnsembleBatchNorm):
                for bn, p in zip(mod.bns, plain):
                    bn.load_state_dict(p.state_dict())
            elif isinstance(mod, BN_TYPES) or (name and not list(mod.children())):
                for key, t in mod.state_dict().items():
                    vals = torch.stack([p.state_dict()[key] for p in plain])
                    t.copy_(vals.float().mean(0).to(t.dtype) if t.is_floating_point() else vals[0])
        return self

    @property
    def num_members(self) -> int:
        """Members in the output: M in ``ensemble`` mode, 1 in ``averaged`` mode."""
        return self.ensemble_size if self.mode == "ensemble" else 1

    def set_mode(self, mode: Mode) -> "BatchEnsembleNet":
        """``"ensemble"`` (M members, ``[B, M, K]``) or ``"averaged"`` (factor-averaged, ``[B, K]``)."""
        if mode not in ("ensemble", "averaged"):
            raise ValueError(f"mode must be 'ensemble' or 'averaged', got {mode!r}")
        if mode == "averaged" and any(isinstance(m, EnsembleBatchNorm) for m in self.body.modules()):
            raise ValueError("averaged mode needs a shared BatchNorm (this network has one BatchNorm per member)")
        self.mode = mode
        for layer in be_layers(self.body):
            layer.mode = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "averaged":
            return self.body(x)
        m = self.ensemble_size
        if not self.fast_path:
            return members_to_batch_major(self.body(repeat_members(x, m)), m)
        if x.device.type == "cpu" and m > 1 and not _any_training(self):
            chunks = cpu_eval_chunks(x, m)  # evaluation is per row: same values
            if len(chunks) > 1:
                with frozen_weights(list(self.body.modules())):
                    return torch.cat([self._batch_major(c) for c in chunks], dim=0)
        return self._batch_major(x)

    def _batch_major(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(to_batch_major(x, self.ensemble_size))
        return y.reshape(x.shape[0], self.ensemble_size, *y.shape[1:])

    def member(self, m: int) -> nn.Module:
        """Member ``m`` alone as a plain network: every BE layer becomes the ``nn.Linear``/``nn.Conv2d``
        with weight ``W ∘ r_m s_mᵀ`` and bias ``b_m`` (shared batch norm and other layers copied).

        ``member(m)(x)`` equals ``self(x)[:, m]`` in evaluation mode; the BE network is not modified.
        """
        if not 0 <= m < self.ensemble_size:
            raise IndexError(f"member {m} out of range for {self.ensemble_size} members")
        body = copy.deepcopy(self.body)
        for _, child in list(body.named_modules()):  # per-member BatchNorm: member m's own
            for attr, sub in list(child.named_children()):
                if isinstance(sub, EnsembleBatchNorm):
                    setattr(child, attr, sub.bns[m])
        with torch.no_grad():
            for layer in be_layers(body):  # every row := member m, so the factor average is member m
                for p in (layer.fast_r, layer.fast_s, layer.member_bias):
                    if p is not None:
                        p.copy_(p[m:m + 1].clone().expand_as(p))
        return replace_with_plain(body).train(self.training)
