"""Model registry: ``register_model(name)`` decorator and ``create_model(name, num_classes, **kw)``.

Contract (see ``endist_vision/README_internal.md``):

* a registered factory ``f(num_classes: int, **kw) -> nn.Module`` builds the *raw* network, whose input
  is already normalised;
* :func:`create_model` wraps it in :class:`NormalizedModel`, so every model returned to users takes raw
  ``[0, 1]`` pixels (or raw 2-D coordinates for the spiral MLP) and normalises inside
  (``x̂ = (x − mean) / std``, per channel);
* outputs are logits ``[B, K]`` (single model / Dirichlet student) or ``[B, M, K]`` (multi-member model:
  ensembles, Hydra, BatchEnsemble). Multi-member factories set ``num_members`` on the raw module.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from endist_vision.registry import Registry

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory(num_classes, **kw) -> nn.Module`` under ``name``.

    Raises ``ValueError`` if the name is already taken (two files registering the same name is a bug).
    """
    return MODELS.register(name)


def available_models() -> list[str]:
    """Sorted names of all registered models."""
    return MODELS.names()


class NormalizedModel(nn.Module):
    """``forward(x) = net((x − mean) / std)`` with per-channel ``mean``/``std`` buffers.

    ``mean``/``std`` broadcast over dim 1 (channels, or features for vector inputs). The wrapper keeps
    the raw network at ``.net`` so that methods can reach heads/bodies, and exposes ``num_members``
    (1 for single-output networks).
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        m = torch.as_tensor(list(mean), dtype=torch.float32)
        s = torch.as_tensor(list(std), dtype=torch.float32)
        if (s <= 0).any():
            raise ValueError(f"normalisation std must be positive, got {list(std)}")
        self.register_buffer("mean", m, persistent=True)
        self.register_buffer("std", s, persistent=True)

    @property
    def num_members(self) -> int:
        return int(getattr(self.net, "num_members", 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        return (x - self.mean.view(shape).to(x.dtype)) / self.std.view(shape).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def create_model(
    name: str,
    num_classes: int,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    in_channels: int = 3,
    **kw: object,
) -> NormalizedModel:
    """Build registered model ``name`` with ``num_classes`` outputs, wrapped in :class:`NormalizedModel`.

    ``mean``/``std`` default to 0/1 per input channel (identity). Extra ``kw`` go to the factory.
    ``name = "timm/<arch>"``: a timm model (:mod:`.timm_models`, ``timm.create_model``, never downloaded).
    ``weights=PATH`` (any name): a local state dict loaded into the raw network (``weights_only=True``;
    plain / ``{'state_dict': ...}`` / ``{'model': ...}``, ``module.`` prefix removed).
    """
    from .timm_models import create_timm_model, is_timm_name, load_weights_into

    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    weights = kw.pop("weights", None)
    if is_timm_name(name):
        net = create_timm_model(name, int(num_classes), in_channels=in_channels, **kw)
    else:
        net = MODELS.get(name)(int(num_classes), in_channels=in_channels, **kw)
    if weights is not None:
        load_weights_into(net, str(weights), int(num_classes))
    n = len(mean) if mean is not None else (len(std) if std is not None else in_channels)
    mean = [0.0] * n if mean is None else mean
    std = [1.0] * n if std is None else std
    return NormalizedModel(net, mean, std)


def raw_net(model: nn.Module) -> nn.Module:
    """The network inside a :class:`NormalizedModel` (or the model itself)."""
    return model.net if isinstance(model, NormalizedModel) else model


def wrap_like(template: nn.Module, net: nn.Module) -> nn.Module:
    """Put ``net`` inside the same input normalisation as ``template`` (a :class:`NormalizedModel`)."""
    if isinstance(template, NormalizedModel):
        return NormalizedModel(net, template.mean.tolist(), template.std.tolist())
    return net
