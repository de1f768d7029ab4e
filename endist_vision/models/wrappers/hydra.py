"""Hydra: shared body + M light heads, one per teacher ([Hydra] §2, eqs. 3–4).

``HydraNet(x) = [head_1(body(x)), …, head_H(body(x))]`` stacked to ``[B, H, K]``.

Two-phase training ([Hydra] §2, "Training with multi-head growth"):

1. one "Hinton head" (``H = 1``) trained on the ensemble mean, eq. (1):
   ``L = T² · KL(mean_m p_m^T ‖ q^T)`` (``shared.losses.ensemble_kd_loss``);
2. :meth:`HydraNet.grow_heads` copies the Hinton head into M heads, each matched to its own
   teacher, eqs. (3)–(4): ``L = (T²/M) Σ_m KL(p_m^T ‖ q_m^T)`` (``shared.losses.hydra_loss``).

A head is the last ``k`` blocks of the teacher architecture ([Hydra] §2: "N − k layers ... for the
body and the original final layer(s) as head").  :func:`block_list` flattens the architectures of
:mod:`endist_vision.models` into an ordered list of blocks whose composition is the original
forward pass; the classifier tail (pooling, flatten, linear) is one block for ResNet/WRN, every
layer is one block for ``nn.Sequential`` models (``digits_cnn``, ``mlp``).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torchvision.models.resnet import ResNet as TorchvisionResNet


def block_list(net: nn.Module) -> list[nn.Module]:
    """Ordered blocks of ``net`` such that applying them in turn equals ``net(x)``.

    Supported: any ``nn.Sequential`` (its children), torchvision ``ResNet`` (stem, every residual
    block of layer1–4, classifier) and :class:`endist_vision.models.wrn.WideResNet` (stem conv, every
    block, BN-ReLU-pool-linear classifier).  Other modules raise ``ValueError``.
    """
    from endist_vision.models.timm_models import is_timm_model, timm_blocks
    from endist_vision.models.wrn import WideResNet

    if is_timm_model(net):
        return timm_blocks(net)  # [pre-logits body, classifier]: only head_blocks=1 (the last layer)
    if isinstance(net, nn.Sequential):
        return list(net.children())
    if isinstance(net, TorchvisionResNet):
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
        return [stem, *blocks, nn.Sequential(net.avgpool, nn.Flatten(1), net.fc)]
    if isinstance(net, WideResNet):
        tail = nn.Sequential(net.bn, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), net.fc)
        return [net.conv1, *net.blocks, tail]
    raise ValueError(
        f"Hydra cannot split a {type(net).__name__}: supported are nn.Sequential models, "
        "torchvision ResNets and WideResNet"
    )


def mlp_head(removed: Sequence[nn.Module], hidden: Sequence[int]) -> nn.Sequential:
    """The MLP head that replaces the blocks ``removed`` from the end of a network (see
    :meth:`HydraNet.from_network`): the modules before their first ``nn.Linear``, then
    ``Linear(d, h_1)-ReLU-…-Linear(h_L, K)``."""
    leaves: list[nn.Module] = []
    for block in removed:
        leaves += list(block.children()) if isinstance(block, nn.Sequential) else [block]
    linears = [i for i, mod in enumerate(leaves) if isinstance(mod, nn.Linear)]
    if not linears or any(h < 1 for h in hidden):
        raise ValueError("head_mlp needs hidden widths >= 1 and an nn.Linear among the head blocks it replaces "
                         f"(got widths {list(hidden)}, blocks {[type(b).__name__ for b in removed]})")
    d, k = leaves[linears[0]].in_features, leaves[linears[-1]].out_features
    layers: list[nn.Module] = list(leaves[: linears[0]])
    for h in hidden:
        layers += [nn.Linear(d, int(h)), nn.ReLU()]
        d = int(h)
    layers.append(nn.Linear(d, k))
    return nn.Sequential(*layers)


class HydraNet(nn.Module):
    """Shared ``body`` and ``num_heads`` heads; ``forward`` returns ``[B, H, K]`` for the active heads.

    All heads exist from construction (so every parameter is in the optimiser from step 0); during
    phase 1 only ``heads[0]`` — the Hinton head — is active (``active_heads = 1``) and the others
    receive no gradient.  :meth:`grow_heads` copies the Hinton head into every other head and
    activates all of them.  ``active_heads`` is a persistent buffer, so checkpoints remember the phase.
    """

    def __init__(self, body: nn.Module, head: nn.Module, num_heads: int = 1, active_heads: int | None = None) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.body = body
        self.heads = nn.ModuleList(copy.deepcopy(head) for _ in range(num_heads))
        active = num_heads if active_heads is None else active_heads
        if active not in (1, num_heads):
            raise ValueError(f"active_heads must be 1 (Hinton phase) or {num_heads}, got {active}")
        self.register_buffer("active_heads", torch.tensor(active))

    @classmethod
    def from_network(cls, net: nn.Module, head_blocks: int, num_heads: int = 1,
                     active_heads: int | None = None, head_mlp: Sequence[int] | None = None) -> "HydraNet":
        """Split ``net`` (see :func:`block_list`): body = all but the last ``head_blocks`` blocks, head = the rest.

        ``head_mlp = [h_1, …, h_L]``: the head is instead a new MLP ``Linear(d, h_1)-ReLU-…-Linear(h_L, K)`` on the
        body's features ([Hydra] §3, MNIST: "adds an MLP with two hidden layers of 100 units each as head", the
        "head = [100, 100, 10]" of Table 2), where ``d``/``K`` are the in/out features of the first/last
        ``nn.Linear`` of the removed blocks; the parameter-free-or-normalisation modules the removed blocks apply
        before that first Linear (pooling, flatten, BN-ReLU of a WRN tail) stay in front of the MLP."""
        blocks = list(copy.deepcopy(block_list(net)))
        from endist_vision.models.timm_models import is_timm_model

        if is_timm_model(net) and head_blocks != 1:
            raise ValueError(f"a timm model ({type(net).__name__}) splits only at its classifier "
                             f"(forward_features/forward_head, the last layer): set head_blocks=1, got {head_blocks}")
        if not 1 <= head_blocks < len(blocks):
            raise ValueError(
                f"head_blocks must be in [1, {len(blocks) - 1}] for a {type(net).__name__} with "
                f"{len(blocks)} blocks, got {head_blocks}"
            )
        cut = len(blocks) - head_blocks
        head: nn.Module = nn.Sequential(*blocks[cut:])
        if head_mlp is not None:
            head = mlp_head(blocks[cut:], head_mlp)
        return cls(nn.Sequential(*blocks[:cut]), head, num_heads, active_heads)

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    @property
    def num_members(self) -> int:
        """Members in the output ``[B, H, K]`` (the active heads)."""
        return int(self.active_heads)

    @property
    def in_hinton_phase(self) -> bool:
        return int(self.active_heads) == 1 and self.num_heads > 1

    def hinton_phase(self) -> None:
        """Phase 1: only the Hinton head ``heads[0]`` is active."""
        self.active_heads.fill_(1)

    @torch.no_grad()
    def grow_heads(self) -> None:
        """Phase 2: copy the (trained) Hinton head into every other head and activate all heads."""
        state = self.heads[0].state_dict()
        for head in self.heads[1:]:
            head.load_state_dict(state)
        self.active_heads.fill_(self.num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        return torch.stack([head(z) for head in self.heads[: int(self.active_heads)]], dim=1)
