"""Wide ResNet WRN-d-k (Zagoruyko & Komodakis, 2016) for 32×32 inputs: depth d = 6n + 4 (d = 28 → n = 4
pre-activation basic blocks per stage), widths 16·k, 32·k, 64·k. torchvision has no CIFAR WRN (its
``wide_resnet50_2`` is an ImageNet bottleneck net), so the block is written here."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if (stride != 1 or cin != cout) else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        sc = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(self.drop(torch.relu(self.bn2(o))))
        return o + sc


class WideResNet(nn.Module):
    """WRN-``depth``-``width``: conv3×3(16) → 3 stages of n pre-act blocks → BN-ReLU-GAP → Linear."""

    def __init__(
        self, num_classes: int, depth: int = 28, width: int = 10, dropout: float = 0.0, in_channels: int = 3
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        cin = widths[0]
        for stage, stride in zip(range(1, 4), (1, 2, 2)):
            for i in range(n):
                layers.append(_PreActBlock(cin, widths[stage], stride if i == 0 else 1, dropout))
                cin = widths[stage]
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.blocks(self.conv1(x))
        o = torch.relu(self.bn(o))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(o, 1), 1))


@register_model("wrn28")
def wrn28(num_classes: int, *, width: int = 10, dropout: float = 0.0, in_channels: int = 3) -> nn.Module:
    """WRN-28-k; ``width`` = k (1, 4, 10)."""
    return WideResNet(num_classes, depth=28, width=width, dropout=dropout, in_channels=in_channels)
