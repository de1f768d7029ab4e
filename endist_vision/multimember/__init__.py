"""Multi-member students for endist_vision: Hydra, BatchEnsemble, LatentBE, perturbations, AE-KD.

* :mod:`.batchensemble` — ``BatchEnsembleLinear``/``BatchEnsembleConv2d`` ([BE] eq. 2), member-major
  layout helpers, :class:`BatchEnsembleNet` (BE version of any Linear/Conv2d network).
* :mod:`.latentbe` — LatentBE student (r = s = 1, prior toward 1) and ``merge_to_single`` ([LatentBE] eq. 5).
* :mod:`.hydra` — :class:`HydraNet`, shared body + heads ([Hydra] §2).
* :mod:`.perturbations` — Gaussian, ODS, ConfODS, TDiv−SDiv ([LatentBE] eqs. 9–14, 34–36).
* :mod:`.aekd` — AE-KD teacher weights (min-norm QP on the capped simplex, [LatentBE] eqs. 27–29).
* :mod:`.models` — registry entries ``batchensemble``, ``latentbe``, ``be_resnet18``, ``be_wrn28``, ``hydra``.
"""

from endist_vision.multimember import models as _models  # noqa: E402,F401  (registers the model names)
