"""Vectorised deep ensemble that works with batch norm in training and evaluation:
:class:`GroupedEnsemble` runs M structurally identical members as ONE network in the batch-major,
member-grouped layout of :mod:`endist_vision.models.layers.grouped`:

* every ``nn.Conv2d`` → one convolution with ``groups = M`` over the members' stacked kernels;
* every ``nn.Linear`` → one batched matmul over the stacked weights;
* every BatchNorm → one BatchNorm over ``M·C`` channels (member m normalised on its own rows with its own
  affine map and running statistics; the updated running statistics and ``num_batches_tracked`` are
  written back to each member, exactly as if the member had run alone);
* everything else (activations, pooling, residual additions, dropout) acts per row and runs once.

Member m's output is therefore ``f(x; θ_m)`` — the loop ``ModuleEnsemble`` computes the same, up to rounding —
in train and eval mode, including the running statistics after training steps, and the gradients reach each
member's own parameters.

State: the members stay in ``self.members`` (an ``nn.ModuleList``), so the state dict has exactly the layout of
:class:`~endist_vision.models.wrappers.ensemble.ModuleEnsemble` (``members.<m>.<name>``) and checkpoints load
either way. The execution graph (a structure-only copy of member 0 whose layers read the members' tensors) is
rebuilt when the ensemble moves device or dtype.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from endist_vision.models.layers.grouped import (
    cpu_eval_chunks,
    frozen_weights,
    grouped_conv2d,
    grouped_linear,
    member_batch_norm,
    members_to_batch_major_rows,
    to_batch_major,
)
from endist_vision.models.wrappers.ensemble import ModuleEnsemble

_BN = nn.modules.batchnorm._BatchNorm


class _GroupedConv2d(nn.Module):
    def __init__(self, convs: list[nn.Conv2d]) -> None:
        super().__init__()
        c = convs[0]
        if c.groups != 1 or c.padding_mode != "zeros" or isinstance(c.padding, str):
            raise ValueError("GroupedEnsemble: only ungrouped, zero-padded Conv2d layers with numeric padding can be grouped")
        self.stride, self.padding, self.dilation = c.stride, c.padding, c.dilation
        object.__setattr__(self, "convs", convs)  # the members' layers: not submodules (no state here)

    _frozen: Any = None

    def frozen_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return (torch.stack([c.weight for c in self.convs]),
                None if self.convs[0].bias is None else torch.stack([c.bias for c in self.convs]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.frozen_weights() if self._frozen is None else self._frozen
        return grouped_conv2d(x, w, b, self.stride, self.padding, self.dilation)


class _GroupedLinear(nn.Module):
    def __init__(self, linears: list[nn.Linear]) -> None:
        super().__init__()
        object.__setattr__(self, "linears", linears)

    _frozen: Any = None

    def frozen_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return (torch.stack([lin.weight for lin in self.linears]),
                None if self.linears[0].bias is None else torch.stack([lin.bias for lin in self.linears]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.frozen_weights() if self._frozen is None else self._frozen
        return grouped_linear(x, w, b)


class _GroupedBatchNorm(nn.Module):
    def __init__(self, bns: list[_BN]) -> None:
        super().__init__()
        first = bns[0]
        if any((bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
               != (first.eps, first.momentum, first.affine, first.track_running_stats) for bn in bns):
            raise ValueError("GroupedEnsemble: the members' BatchNorm layers differ in eps/momentum/affine/track_running_stats")
        object.__setattr__(self, "bns", bns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return member_batch_norm(x, self.bns)


def _grouped_leaf(mods: list[nn.Module], path: str) -> nn.Module | None:
    first = mods[0]
    if any(type(m) is not type(first) for m in mods):
        raise ValueError(f"GroupedEnsemble: members differ at {path!r} ({sorted({type(m).__name__ for m in mods})})")
    if isinstance(first, nn.Conv2d):
        return _GroupedConv2d(mods)  # type: ignore[arg-type]
    if isinstance(first, nn.Linear):
        return _GroupedLinear(mods)  # type: ignore[arg-type]
    if isinstance(first, _BN):
        return _GroupedBatchNorm(mods)  # type: ignore[arg-type]
    return None


def build_grouped_graph(members: list[nn.Module]) -> nn.Module:
    """A structure-only copy of ``members[0]`` whose Conv2d/Linear/BatchNorm layers run all members at once
    (batch-major input ``[B·M, ...]``). Other modules may hold buffers only if all members' are equal (e.g. the
    input normalisation); they then read member 0's. ``ValueError`` naming the module otherwise."""
    graph = copy.deepcopy(members[0])
    tables = [dict(m.named_modules()) for m in members]
    for name, mod in list(graph.named_modules()):
        for attr, _ in list(mod.named_children()):
            path = f"{name}.{attr}".lstrip(".")
            if any(path not in t for t in tables):
                raise ValueError(f"GroupedEnsemble: the members have no common module {path!r}")
            leaf = _grouped_leaf([t[path] for t in tables], path)
            if leaf is not None:
                setattr(mod, attr, leaf)
    for name, mod in graph.named_modules():
        if isinstance(mod, (_GroupedConv2d, _GroupedLinear, _GroupedBatchNorm)):
            continue
        own = tables[0][name]
        if next(iter(own.parameters(recurse=False)), None) is not None:
            raise ValueError(f"GroupedEnsemble: module {name or '<root>'!r} ({type(own).__name__}) has parameters "
                             "that are not in a Conv2d/Linear/BatchNorm layer")
        for key, buf in own.named_buffers(recurse=False):
            if any(not torch.equal(t[name].get_buffer(key), buf) for t in tables[1:]):
                raise ValueError(f"GroupedEnsemble: buffer {name}.{key} differs between members")
            mod._buffers[key] = buf
    return graph


class GroupedEnsemble(ModuleEnsemble):
    """M members with the :class:`ModuleEnsemble` interface and state dict, computed as one grouped network."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__(members)
        object.__setattr__(self, "_graph", build_grouped_graph(members))  # raises if not groupable

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "GroupedEnsemble":
        out = super()._apply(fn, *args, **kwargs)
        object.__setattr__(self, "_graph", build_grouped_graph(list(self.members)))  # re-link moved tensors
        return out

    def _run(self, rows: torch.Tensor, batch: int) -> torch.Tensor:
        self._graph.train(self.training)
        y = self._graph(rows)
        return y.reshape(batch, self.num_members, *y.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All members on the same batch ``x [B, ...]`` → logits ``[B, M, K]``.

        On the CPU in evaluation mode a large batch is cut into chunks (:func:`cpu_eval_chunks`; per-row maths,
        same values)."""
        m, b = self.num_members, x.shape[0]
        if x.device.type == "cpu" and m > 1 and not any(mod.training for mod in self.modules()):
            chunks = cpu_eval_chunks(x, m)
            if len(chunks) > 1:
                with frozen_weights(list(self._graph.modules())):
                    return torch.cat([self._run(to_batch_major(c, m), c.shape[0]) for c in chunks], dim=0)
        return self._run(to_batch_major(x, m), b)

    def forward_members(self, xs: torch.Tensor) -> torch.Tensor:
        """Member m on ``xs[m]`` (``xs [M, B, ...]``) → logits ``[B, M, K]``."""
        if xs.shape[0] != self.num_members:
            raise ValueError(f"forward_members: {xs.shape[0]} batches for {self.num_members} members")
        return self._run(members_to_batch_major_rows(xs), xs.shape[1])

    def subset(self, n: int) -> "GroupedEnsemble":
        return GroupedEnsemble([copy.deepcopy(self.members[m]) for m in range(n)]).train(self.training)
