"""Small models for the embedded data sets: an MLP for the 2-D spirals ([EnD2] §4) and a small CNN
for scikit-learn's 8×8 digits. Neither uses batch norm, so ensembles of them are vectorised with
``torch.func`` (:class:`endist_vision.models.wrappers.ensemble.StackedEnsemble`)."""

from __future__ import annotations

from torch import nn

from .registry import register_model


@register_model("mlp")
def mlp(
    num_classes: int,
    *,
    in_channels: int = 2,
    in_features: int | None = None,
    hidden: int = 64,
    depth: int = 3,
    dropout: float = 0.0,
    activation: str = "relu",
) -> nn.Module:
    """``depth`` hidden layers of width ``hidden`` (Linear→act[→Dropout]) and a linear output layer.
    The input is flattened; its size is ``in_features`` if given (784 for 28×28×1 MNIST), else
    ``in_channels`` (2 for spirals)."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[activation]
    layers: list[nn.Module] = [nn.Flatten()]
    d = int(in_features) if in_features else in_channels
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = hidden
    layers.append(nn.Linear(d, num_classes))
    return nn.Sequential(*layers)


@register_model("digits_cnn")
def digits_cnn(
    num_classes: int, *, in_channels: int = 1, width: int = 16, hidden: int = 64, dropout: float = 0.0
) -> nn.Module:
    """8×8 input: conv3×3(w)→ReLU→conv3×3(2w)→ReLU→maxpool2 (4×4) → Linear(32w, hidden)→ReLU
    [→Dropout] → Linear(hidden, K)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 16, hidden),
        nn.ReLU(),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, num_classes))
    return nn.Sequential(*layers)
