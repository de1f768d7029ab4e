"""Allow-list the Python objects fairseq pickles into checkpoints.

torch >= 2.6 loads checkpoints with ``weights_only=True`` by default, and
fairseq 0.12 stores its training arguments as an ``argparse.Namespace`` (plus,
depending on the options, numpy scalars for ``best_loss`` and enum choices).
Without this allow-list ``fairseq-generate`` fails with
``WeightsUnpickler error: Unsupported global: GLOBAL argparse.Namespace``.
Called once, when :mod:`endist_seq` is imported.
"""

from __future__ import annotations

import argparse
from typing import Any, List

import torch

_DONE = False


def _numpy_globals() -> List[Any]:
    import numpy as np

    found: List[Any] = [np.dtype, np.ndarray]
    try:  # numpy >= 2: scalar reconstructor lives in numpy._core
        from numpy._core.multiarray import _reconstruct, scalar  # type: ignore

        found += [scalar, _reconstruct]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore

        found += [scalar, _reconstruct]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        cls = getattr(getattr(np, "dtypes", None), name, None)
        if cls is not None:
            found.append(cls)
    return found


def _fairseq_enums() -> List[Any]:
    """Enum classes fairseq's dataclass configs may leave in a checkpoint."""
    found: List[Any] = []
    try:
        from fairseq.dataclass import constants
    except ImportError:  # pragma: no cover - fairseq missing
        return found
    import enum

    for value in vars(constants).values():
        if isinstance(value, type) and issubclass(value, enum.Enum):
            found.append(value)
    try:  # placeholder objects in states broadcast between ranks (distributed_utils.broadcast_object)
        from fairseq.distributed.utils import _TensorPlaceholder

        found.append(_TensorPlaceholder)
    except ImportError:  # pragma: no cover - other fairseq versions
        pass
    return found


def _omegaconf_globals() -> List[Any]:
    """What a fairseq checkpoint state holds once loaded: ``cfg`` is an omegaconf ``DictConfig``.

    fairseq re-serialises such loaded states with ``torch.save``/``torch.load``
    when it broadcasts a checkpoint from rank 0 to the other ranks
    (``distributed_utils.broadcast_object``, used by ``--restore-file`` and by
    resuming from ``checkpoint_last.pt`` under DDP), so the DictConfig's pickled
    internals must be allow-listed as well.
    """
    import collections
    import typing

    found: List[Any] = [dict, list, tuple, set, int, float, str, bool, collections.defaultdict,
                        collections.OrderedDict, typing.Any]
    try:
        from omegaconf import DictConfig, ListConfig, base, nodes
    except ImportError:  # pragma: no cover - omegaconf missing
        return found
    found += [DictConfig, ListConfig, base.ContainerMetadata, base.Metadata]
    for name in ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "EnumNode", "BytesNode", "PathNode"):
        cls = getattr(nodes, name, None)
        if cls is not None:
            found.append(cls)
    return found


def register_fairseq_safe_globals() -> None:
    """Add fairseq's checkpoint globals to torch's weights-only allow-list (idempotent)."""
    global _DONE
    if _DONE:
        return
    torch.serialization.add_safe_globals(
        [argparse.Namespace, *_numpy_globals(), *_fairseq_enums(), *_omegaconf_globals()]
    )
    _DONE = True
