"""Model zoo, by role (torch-uncertainty's layout):

* :mod:`.registry` — ``register_model`` / ``create_model`` / ``available_models`` and
  :class:`NormalizedModel` (every model takes raw [0, 1] inputs and normalises inside);
* architectures (one file each, registered on import): ``resnet18/34/50`` (:mod:`.resnet`,
  ``stem="cifar"|"imagenet"``), ``resnet20``/``resnet56`` (:mod:`.cifar_resnet`, He et al. CIFAR ResNets),
  ``vgg16_bn`` (:mod:`.vgg`), ``wrn28`` (:mod:`.wrn`, ``width=k``), ``mlp`` and ``digits_cnn`` (:mod:`.small`);
* :mod:`.layers` — layers that replace ``nn.Linear``/``nn.Conv2d`` (BatchEnsemble rank-one layers);
* :mod:`.wrappers` — networks built around a base network: deep ensembles (:class:`StackedEnsemble`,
  :class:`ModuleEnsemble`), :class:`BatchEnsembleNet`, :class:`HydraNet`, the LatentBE merge;
* :mod:`.multi_member` — registry entries ``batchensemble``, ``latentbe``, ``be_resnet18``, ``be_wrn28``, ``hydra``.

This package imports nothing from the rest of :mod:`endist_vision` except :mod:`endist_vision.registry`.
"""

from .registry import NormalizedModel, available_models, create_model, raw_net, register_model, wrap_like

from . import cifar_resnet, resnet, vgg, wrn, small  # noqa: E402,F401  (import registers the built-ins)
from . import multi_member  # noqa: E402,F401  (registers the multi-member students)
from .wrappers import BatchEnsembleNet, GroupedEnsemble, HydraNet, ModuleEnsemble, StackedEnsemble, build_ensemble  # noqa: E402

__all__ = [
    "NormalizedModel",
    "available_models",
    "create_model",
    "register_model",
    "raw_net",
    "wrap_like",
    "BatchEnsembleNet",
    "HydraNet",
    "GroupedEnsemble",
    "ModuleEnsemble",
    "StackedEnsemble",
    "build_ensemble",
]
