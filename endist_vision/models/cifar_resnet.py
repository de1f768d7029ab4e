"""CIFAR ResNets of He et al. (2016, §4.2): ResNet-(6n+2) — a 3×3 conv with 16 filters, three stages of
n torchvision ``BasicBlock``s with 16/32/64 channels (stride 2 at the first block of stages 2 and 3),
global average pooling and a linear classifier. ResNet-20 (n = 3) has ≈ 0.27 M parameters.

The shortcut of a down-sampling block is option **A** of the paper by default (identity on every second
pixel, zero-padded channels: no parameters) or option **B** (1×1 conv + BN projection).

The network is a plain ``nn.Sequential`` of [stem, block₁, …, block₃ₙ, classifier], so
:func:`endist_vision.models.wrappers.hydra.block_list` splits it per residual block (Hydra body + heads) and
BatchEnsemble converts its convolutions like any other network.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .registry import register_model


class PadShortcut(nn.Module):
    """Option-A shortcut: ``x[:, :, ::s, ::s]`` with the extra output channels zero-padded."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


def cifar_resnet(num_classes: int, depth: int = 20, in_channels: int = 3, shortcut: str = "A") -> nn.Sequential:
    """ResNet-(6n+2) for 32×32 inputs (any size works: the pooling is global) as a plain ``nn.Sequential``
    with children ``stem``, ``block1`` … ``block{3n}``, ``classifier``."""
    from torchvision.models.resnet import BasicBlock

    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' (zero-padding identity) or 'B' (1x1 projection), got {shortcut!r}")
    n = (depth - 2) // 6
    layers: dict[str, nn.Module] = {"stem": nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))}
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(n):
            s = stride if i == 0 else 1
            down = None
            if s != 1 or cin != cout:
                down = PadShortcut(cin, cout, s) if shortcut == "A" else nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))
            layers[f"block{len(layers)}"] = BasicBlock(cin, cout, s, down)
            cin = cout
    layers["classifier"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(cin, num_classes))
    net = nn.Sequential(OrderedDict(layers))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


@register_model("resnet20")
def resnet20(num_classes: int, *, in_channels: int = 3, shortcut: str = "A") -> nn.Module:
    """ResNet-20 (He et al. 2016, CIFAR): 3 stages × 3 BasicBlocks, 16/32/64 channels, ≈ 0.27 M parameters."""
    return cifar_resnet(num_classes, 20, in_channels, shortcut)


@register_model("resnet56")
def resnet56(num_classes: int, *, in_channels: int = 3, shortcut: str = "A") -> nn.Module:
    """ResNet-56 (He et al. 2016, CIFAR): 3 stages × 9 BasicBlocks, ≈ 0.85 M parameters."""
    return cifar_resnet(num_classes, 56, in_channels, shortcut)
