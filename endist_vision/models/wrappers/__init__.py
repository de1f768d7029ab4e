"""Networks built around a base network, all with the multi-member output ``[B, M, K]``:

* :mod:`.ensemble` — deep ensembles: :class:`StackedEnsemble` (vmap-ed, no batch norm) and
  :class:`ModuleEnsemble` (Python loop), :func:`build_ensemble`; :mod:`.grouped_ensemble` —
  :class:`GroupedEnsemble` (batch-norm members as one grouped network, train and eval);
* :mod:`.batchensemble` — :class:`BatchEnsembleNet` ([BE]; ``member(m)`` gives member m as a plain network);
* :mod:`.hydra` — :class:`HydraNet`, shared body + heads ([Hydra] §2);
* :mod:`.latentbe` — LatentBE student and ``merge_to_single`` ([LatentBE] eq. 5).
"""

from .batchensemble import BatchEnsembleNet
from .ensemble import ModuleEnsemble, StackedEnsemble, build_ensemble
from .grouped_ensemble import GroupedEnsemble
from .hydra import HydraNet, block_list
from .latentbe import latentbe_student, merge_to_single, recalibrate_batchnorm

__all__ = [
    "BatchEnsembleNet",
    "GroupedEnsemble",
    "HydraNet",
    "ModuleEnsemble",
    "StackedEnsemble",
    "block_list",
    "build_ensemble",
    "latentbe_student",
    "merge_to_single",
    "recalibrate_batchnorm",
]
