"""VGG-16 with batch norm and dropout, the [EnD2] App. A architecture, built from torchvision's
``VGG``/``make_layers`` (config "D"). For small inputs (32×32, 64×64) the 7×7 average pool and the
4096-wide classifier are replaced by a global average pool and a 512-wide classifier with dropout.

Note: [EnD2] Table 6 quotes dropout as the *keep* probability; here ``dropout`` is the *drop*
probability (keep 0.5 → ``dropout=0.5``, keep 0.7 → ``dropout=0.3``).
"""

from __future__ import annotations

from torch import nn

from .registry import register_model


@register_model("vgg16_bn")
def vgg16_bn(
    num_classes: int, *, in_channels: int = 3, dropout: float = 0.5, small_input: bool = True
) -> nn.Module:
    """VGG-16-BN. ``small_input=True``: GAP + Dropout→Linear(512,512)→BN→ReLU→Dropout→Linear(512,K)."""
    from torchvision.models import vgg as tv_vgg  # lazy: torchvision.models imports take seconds

    features = tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=True)
    if in_channels != 3:
        features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
    net = tv_vgg.VGG(features, num_classes=num_classes, init_weights=True, dropout=dropout)
    if small_input:
        net.avgpool = nn.AdaptiveAvgPool2d(1)
        net.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )
    return net
