"""Reading the CIFAR-10/100 "python version" batches without running code from them.

The real files (``cifar-10-batches-py/data_batch_1`` …, ``cifar-100-python/train``) were written by Python 2's
``cPickle`` (protocol 2) and hold one dict: ``data`` (a uint8 numpy array ``[N, 3072]``), ``labels`` or
``fine_labels``/``coarse_labels`` (lists of ints), ``filenames`` (list of str) and ``batch_label`` (str); they
are read with ``encoding="bytes"``, so Python 2 strings come back as ``bytes``.

A plain ``pickle.load`` runs whatever callable a file names (``os.system`` through ``__reduce__``).
:class:`CifarUnpickler` admits only the globals a numpy array pickles to —
``numpy.core.multiarray._reconstruct`` (``numpy._core.multiarray._reconstruct`` under numpy 2),
``numpy.ndarray`` and ``numpy.dtype`` — every other global is refused before anything is called; dicts,
lists, tuples, bytes, str, ints and floats need no global at all. The result must be a dict whose ``data``
is a uint8 array, else the file is rejected too.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

#: ``(module, name)`` pairs a real CIFAR batch refers to (numpy array reconstruction only).
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})


class CifarUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose :meth:`find_class` admits only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (a CIFAR batch holds only numpy arrays, lists, "
                                         "bytes/str and ints)")
        return super().find_class(module, name)


def load_cifar_batch(path: Path, flag: str) -> dict[bytes, Any]:
    """The dict of one CIFAR batch file (keys are ``bytes``), read with :class:`CifarUnpickler`.

    Raises:
        DatasetError: the file cannot be unpickled, names a global outside :data:`ALLOWED_GLOBALS`, or is not
            a dict with a uint8 ``data`` array — one line naming ``flag`` and the file.
    """
    try:
        with open(path, "rb") as f:
            d = CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a malformed (or hostile) data set
        raise DatasetError(f"{flag}: cannot read CIFAR pickle {path}: {type(e).__name__}: {e}") from e
    if not isinstance(d, dict) or not all(isinstance(k, (bytes, str)) for k in d):
        raise DatasetError(f"{flag}: {path} is not a CIFAR batch (expected a dict, got {type(d).__name__})")
    d = {k.encode() if isinstance(k, str) else k: v for k, v in d.items()}
    data = d.get(b"data")
    if data is not None and not (isinstance(data, np.ndarray) and data.dtype == np.uint8):
        raise DatasetError(f"{flag}: {path}: 'data' must be a uint8 numpy array, got {type(data).__name__}"
                           + (f" of {data.dtype}" if isinstance(data, np.ndarray) else ""))
    return d
