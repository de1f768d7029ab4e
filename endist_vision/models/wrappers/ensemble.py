"""Ensembles (deep ensembles of independent members) as multi-member models: ``forward(x) -> [B, M, K]`` (all members on the same input) and
``forward_members(xs[M, B, ...]) -> [B, M, K]`` (member m on its own batch ``xs[m]``: independent
shuffles when training an ensemble in one loop).

* :class:`StackedEnsemble` — members' parameters stacked with ``torch.func.stack_module_state`` and
  evaluated in one vectorised call (``torch.func.vmap`` over ``functional_call``); used for training
  members without batch norm (running-stat updates cannot be vmapped in place). 100 spiral MLPs cost
  about as much as one wide MLP.  With ``inference_only=True`` it also takes batch-norm members and
  refuses training mode (in eval mode batch norm is a fixed affine map, which vmaps). Batch-norm members
  in training: :class:`~endist_vision.models.wrappers.grouped_ensemble.GroupedEnsemble`
  (``build_ensemble(vectorize=True)``).
* :class:`ModuleEnsemble` — an ``nn.ModuleList`` looped in Python; any architecture;
  :meth:`ModuleEnsemble.stacked` is its vectorised evaluation-only twin.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class StackedEnsemble(nn.Module):
    """M structurally identical members evaluated with one ``vmap``-ed ``functional_call``."""

    def __init__(self, members: list[nn.Module], *, inference_only: bool = False) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if not inference_only and any(_has_batchnorm(m) for m in members):
            raise ValueError("StackedEnsemble cannot vectorise batch norm in training; use GroupedEnsemble "
                             "(build_ensemble(vectorize=True)) or ModuleEnsemble")
        self.inference_only = inference_only
        params, buffers = stack_module_state(members)
        self._pnames = list(params)
        self._bnames = list(buffers)
        self.params = nn.ParameterDict(
            {n.replace(".", "__"): nn.Parameter(p.detach().clone()) for n, p in params.items()}
        )
        for n, b in buffers.items():
            self.register_buffer("buf__" + n.replace(".", "__"), b.detach().clone())
        self.num_members = len(members)
        # Structure-only template (not a submodule: holds no state the ensemble needs to save/move).
        object.__setattr__(self, "_template", copy.deepcopy(members[0]).to("meta"))

    def train(self, mode: bool = True) -> "StackedEnsemble":
        if mode and self.inference_only:
            raise RuntimeError("an inference_only StackedEnsemble (batch-norm members) cannot be put in training mode")
        return super().train(mode)

    def _stacked(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        p = {n: self.params[n.replace(".", "__")] for n in self._pnames}
        b = {n: getattr(self, "buf__" + n.replace(".", "__")) for n in self._bnames}
        return p, b

    def _fast_plan(self) -> list[tuple[str, Any]] | None:
        """If every member is ``NormalizedModel(Sequential(Flatten/Linear/activation/Dropout))`` (the
        spiral MLP), a plan for a batched-matmul forward (same maths as vmap, far less overhead)."""
        if hasattr(self, "_plan"):
            return self._plan
        plan: list[tuple[str, Any]] | None = []
        t = self._template
        net = getattr(t, "net", None)
        if not (hasattr(t, "normalize") and isinstance(net, nn.Sequential)):
            plan = None
        else:
            for i, layer in enumerate(net):
                if isinstance(layer, nn.Linear):
                    plan.append(("linear", f"net.{i}"))
                elif isinstance(layer, (nn.ReLU, nn.Tanh, nn.GELU, nn.Identity)):
                    plan.append(("act", layer))
                elif isinstance(layer, nn.Dropout):
                    plan.append(("dropout", layer.p))
                elif isinstance(layer, nn.Flatten):
                    plan.append(("flatten", None))
                else:
                    plan = None
                    break
        object.__setattr__(self, "_plan", plan)
        return plan

    def _fast_forward(self, plan: list[tuple[str, Any]], x: torch.Tensor) -> torch.Tensor:
        """x [M, B, ...] → [B, M, K] via ``baddbmm``: h ← b + h·Wᵀ per member."""
        p, b = self._stacked()
        mean, std = b["mean"], b["std"]  # [M, C]
        shape = [mean.shape[0], 1, -1] + [1] * (x.dim() - 3)
        h = (x - mean.view(shape).to(x.dtype)) / std.view(shape).to(x.dtype)
        if h.dim() > 3:
            h = h.flatten(2)
        for kind, arg in plan:
            if kind == "linear":
                w, bias = p[f"{arg}.weight"], p[f"{arg}.bias"]
                h = torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))
            elif kind == "act":
                h = arg(h)
            elif kind == "dropout":
                h = nn.functional.dropout(h, arg, self.training)
        return h.transpose(0, 1)

    def _call(self, x_dim: int | None, x: torch.Tensor) -> torch.Tensor:
        plan = self._fast_plan()
        if plan is not None:
            xs = x if x_dim == 0 else x.unsqueeze(0).expand(self.num_members, *x.shape)
            return self._fast_forward(plan, xs)
        p, b = self._stacked()
        template = self._template
        template.train(self.training)

        def one(pm: dict[str, torch.Tensor], bm: dict[str, torch.Tensor], xm: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (pm, bm), (xm,))

        out = vmap(one, in_dims=(0, 0, x_dim), randomness="different")(p, b, x)  # [M, B, K]
        return out.transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All members on the same batch ``x [B, ...]`` → logits ``[B, M, K]``."""
        return self._call(None, x)

    def forward_members(self, xs: torch.Tensor) -> torch.Tensor:
        """Member m on ``xs[m]`` (``xs [M, B, ...]``) → logits ``[B, M, K]``."""
        return self._call(0, xs)

    def member(self, m: int) -> nn.Module:
        """A standalone copy of member ``m`` (an ordinary module)."""
        net = copy.deepcopy(self._template).to_empty(device=next(iter(self.params.values())).device)
        p, b = self._stacked()
        net.load_state_dict({**{k: v[m].detach() for k, v in p.items()}, **{k: v[m] for k, v in b.items()}})
        return net

    def subset(self, n: int) -> "StackedEnsemble":
        """The first ``n`` members as a new ensemble (e.g. the 10-member sub-ensemble of [EnD2] §4)."""
        return StackedEnsemble([self.member(m) for m in range(n)], inference_only=self.inference_only).train(self.training)


class ModuleEnsemble(nn.Module):
    """Members in an ``nn.ModuleList``, looped in Python (works for any architecture)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.num_members = len(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members], dim=1)

    def forward_members(self, xs: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(xs[i]) for i, m in enumerate(self.members)], dim=1)

    def member(self, m: int) -> nn.Module:
        return copy.deepcopy(self.members[m])

    def stacked(self) -> StackedEnsemble:
        """The members as an evaluation-mode :class:`StackedEnsemble` (one vmap-ed call; batch norm
        allowed because its running statistics are only read). ``ValueError`` if the members differ in
        structure."""
        return StackedEnsemble([copy.deepcopy(m).eval() for m in self.members], inference_only=True).eval()

    def subset(self, n: int) -> "ModuleEnsemble":
        return ModuleEnsemble([copy.deepcopy(self.members[m]) for m in range(n)])


def build_ensemble(
    make_member: Callable[[int], nn.Module], num_members: int, vectorize: str | bool = "auto"
) -> StackedEnsemble | ModuleEnsemble:
    """Build ``num_members`` members with ``make_member(m)`` (which should seed its own init) and return

    * members without batch norm: a :class:`StackedEnsemble` (``vectorize`` true or "auto"; vmap-ed);
    * members with batch norm and ``vectorize=True``: a
      :class:`~endist_vision.models.wrappers.grouped_ensemble.GroupedEnsemble` (one grouped network, train and
      eval; the same state dict as the loop; ``ValueError`` when the members cannot be grouped);
    * members with batch norm and "auto", or ``vectorize=False``: a :class:`ModuleEnsemble` (Python loop).
      "auto" keeps the loop for batch norm because on the CPU the grouped network is no faster: the members'
      convolutions are compute-bound and the M-times larger activations cost page faults with glibc's default
      allocator (``scripts/benchmarks/vision_speed.py`` measures it)."""
    from .grouped_ensemble import GroupedEnsemble  # (it subclasses ModuleEnsemble, defined above)

    members = [make_member(m) for m in range(num_members)]
    if vectorize != "auto" and not vectorize:
        return ModuleEnsemble(members)
    if not any(_has_batchnorm(m) for m in members):
        return StackedEnsemble(members)
    return ModuleEnsemble(members) if vectorize == "auto" else GroupedEnsemble(members)
