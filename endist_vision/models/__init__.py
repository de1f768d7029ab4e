"""Model zoo. ``create_model(name, num_classes, **kw)``; register new models with ``@register_model``.

Built-ins: ``resnet18/34/50`` (``stem="cifar"|"imagenet"``), ``resnet20``/``resnet56`` (He et al. CIFAR
ResNets), ``vgg16_bn``, ``wrn28`` (``width=k``), ``mlp`` (spirals; MNIST with ``in_features=784``),
``digits_cnn`` (8×8 digits). Ensembles of any of them: :mod:`.ensemble`.
"""

from .registry import NormalizedModel, available_models, create_model, register_model

from . import cifar_resnet, resnet, vgg, wrn, small  # noqa: E402,F401  (import registers the built-ins)
from .ensemble import ModuleEnsemble, StackedEnsemble, build_ensemble  # noqa: E402

# Extension packages register their models on import (issue #6: endist_vision/multimember/).
import importlib.util as _ilu  # noqa: E402

if _ilu.find_spec("endist_vision.multimember") is not None:
    import endist_vision.multimember  # noqa: E402,F401

__all__ = [
    "NormalizedModel",
    "available_models",
    "create_model",
    "register_model",
    "ModuleEnsemble",
    "StackedEnsemble",
    "build_ensemble",
]
