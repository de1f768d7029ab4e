"""Registry entries for multi-member students (see ``endist_vision/models/registry.py`` for the contract).

Model keyword arguments (``model.kwargs`` or ``create_model(..., **kw)``): ``base`` (a registered
single-model name), ``ensemble_size`` (BatchEnsemble members M), ``num_heads``/``head_blocks`` (Hydra);
every other keyword goes to the base architecture. The training *methods* of the same names
(``method: batchensemble`` etc., :mod:`endist_vision.methods`) instead take the member count from
``method_args.members``.

Every entry wraps a registered *base* architecture (``digits_cnn``, ``mlp``, ``resnet18``, ``wrn28``,
...) built with the base's own keyword arguments:

* ``batchensemble`` — BE version of ``base`` (every Conv2d/Linear rank-one, [BE] eq. 2),
  ``fast_init="random_sign"``, fast weights decayed toward 0; output ``[B, M, K]``.
* ``latentbe`` — the same with ``r = s = 1`` and prior mean 1 ([LatentBE] Alg. 2).
* ``be_resnet18`` / ``be_wrn28`` — ``batchensemble`` with ``base`` fixed to the ResNet-18 / WRN-28-k.
* ``hydra`` — ``base`` split into a shared body and ``num_heads`` copies of its last ``head_blocks``
  blocks ([Hydra] §2); output ``[B, H, K]``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from endist_vision.models.registry import create_model, register_model
from endist_vision.models.wrappers.batchensemble import BatchEnsembleNet
from endist_vision.models.wrappers.hydra import HydraNet


def base_network(base: str, num_classes: int, in_channels: int, base_kwargs: dict[str, Any]) -> nn.Module:
    """The raw (un-normalised) network of registered model ``base``."""
    if base in ("batchensemble", "latentbe", "be_resnet18", "be_wrn28", "hydra"):
        raise ValueError(f"base must be a single-model architecture, got {base!r}")
    return create_model(base, num_classes, in_channels=in_channels, **base_kwargs).net


@register_model("batchensemble")
def batchensemble(num_classes: int, *, in_channels: int = 3, base: str = "digits_cnn", ensemble_size: int = 4,
                  fast_init: str = "random_sign", fast_prior: float = 0.0, init_std: float = 0.5,
                  **base_kwargs: Any) -> BatchEnsembleNet:
    """BatchEnsemble of ``ensemble_size`` members over architecture ``base`` → ``[B, M, K]``."""
    net = base_network(base, num_classes, in_channels, base_kwargs)
    return BatchEnsembleNet.from_plain(net, ensemble_size, fast_init=fast_init,  # type: ignore[arg-type]
                                       fast_prior=fast_prior, init_std=init_std)


@register_model("latentbe")
def latentbe(num_classes: int, *, in_channels: int = 3, base: str = "digits_cnn", ensemble_size: int = 4,
             **base_kwargs: Any) -> BatchEnsembleNet:
    """LatentBE student: BE over ``base`` with ``r = s = 1`` and prior mean 1 ([LatentBE] Alg. 2 line 1)."""
    net = base_network(base, num_classes, in_channels, base_kwargs)
    return BatchEnsembleNet.from_plain(net, ensemble_size, fast_init="ones", fast_prior=1.0)


@register_model("be_resnet18")
def be_resnet18(num_classes: int, *, in_channels: int = 3, ensemble_size: int = 4, fast_init: str = "random_sign",
                fast_prior: float = 0.0, **kw: Any) -> BatchEnsembleNet:
    """BatchEnsemble ResNet-18 (torchvision blocks, CIFAR stem by default)."""
    return batchensemble(num_classes, in_channels=in_channels, base="resnet18", ensemble_size=ensemble_size,
                         fast_init=fast_init, fast_prior=fast_prior, **kw)


@register_model("be_wrn28")
def be_wrn28(num_classes: int, *, in_channels: int = 3, ensemble_size: int = 4, fast_init: str = "random_sign",
             fast_prior: float = 0.0, **kw: Any) -> BatchEnsembleNet:
    """BatchEnsemble WRN-28-k (``width=k``) as in [BE] §4 / [LatentBE] §5."""
    return batchensemble(num_classes, in_channels=in_channels, base="wrn28", ensemble_size=ensemble_size,
                         fast_init=fast_init, fast_prior=fast_prior, **kw)


@register_model("hydra")
def hydra(num_classes: int, *, in_channels: int = 3, base: str = "digits_cnn", num_heads: int = 1,
          head_blocks: int = 3, **base_kwargs: Any) -> HydraNet:
    """Hydra over ``base``: the last ``head_blocks`` blocks become the head, ``num_heads`` copies → ``[B, H, K]``."""
    net = base_network(base, num_classes, in_channels, base_kwargs)
    return HydraNet.from_network(net, head_blocks, num_heads)
