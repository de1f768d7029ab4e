"""torchvision ResNet-18/34/50 with either the CIFAR stem (3×3 conv, stride 1, no max-pool) or the
original ImageNet stem (7×7 conv, stride 2, 3×3 max-pool). The residual body is torchvision's."""

from __future__ import annotations

from torch import nn

from .registry import register_model


def _resnet(
    arch: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    stem: str = "cifar",
    zero_init_residual: bool = False,
) -> nn.Module:
    from torchvision.models import resnet as tv_resnet  # lazy: torchvision.models imports take seconds

    net = getattr(tv_resnet, arch)(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if stem == "cifar":
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    elif stem == "imagenet":
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    else:
        raise ValueError(f"resnet stem must be 'cifar' or 'imagenet', got {stem!r}")
    return net


@register_model("resnet18")
def resnet18(num_classes: int, **kw: object) -> nn.Module:
    """ResNet-18 (torchvision BasicBlock ×[2,2,2,2]); ``stem="cifar"`` (default) or ``"imagenet"``."""
    return _resnet("resnet18", num_classes, **kw)


@register_model("resnet34")
def resnet34(num_classes: int, **kw: object) -> nn.Module:
    """ResNet-34 (torchvision BasicBlock ×[3,4,6,3])."""
    return _resnet("resnet34", num_classes, **kw)


@register_model("resnet50")
def resnet50(num_classes: int, **kw: object) -> nn.Module:
    """ResNet-50 (torchvision Bottleneck ×[3,4,6,3]); ``zero_init_residual=True`` as in [Proxy] §4.2."""
    return _resnet("resnet50", num_classes, **kw)
