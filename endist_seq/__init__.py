"""endist_seq — fairseq plugin (load with ``--user-dir endist_seq``).

Importing the package installs :func:`endist_seq.errors.endist_excepthook`,
which prints an uncaught endist user error
(:class:`endist_seq.errors.EndistUserError`) as one ``error: ...`` line instead
of a traceback (other exceptions are untouched), and registers the endist
tasks and criterions with fairseq and allow-lists what fairseq pickles into
checkpoints (torch >= 2.6).

The registration needs torch and fairseq (≈ 4 s to import), which the
file-only tools (``endist-seq-eval --help``, its report from text outputs) never
use. So it runs at once when torch or fairseq is already imported — always the
case when fairseq loads the plugin via ``--user-dir`` — and otherwise right
after the first later ``import torch`` / ``import fairseq`` completes, before
any fairseq task or ``torch.load`` can run. When that import happens inside the
import of an ``endist_seq`` module (e.g. ``import endist_seq.generation.scorer``
as a script's first import: its own ``import torch``), the registration waits
until the outermost ``endist_seq`` module being imported has finished: it imports
the tasks, which import that module, and a half-initialised module has not
defined its names yet.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any, Optional, Sequence

from endist_seq.errors import install_excepthook

install_excepthook()

_TRIGGERS = ("torch", "fairseq")
_REGISTERED = False
_PENDING = False  # torch/fairseq finished importing inside an endist_seq module's import: register after it


def register_with_fairseq() -> None:
    """Allow-list fairseq's checkpoint globals and register the endist tasks/criterions (idempotent)."""
    global _REGISTERED, _PENDING
    if _REGISTERED:
        return
    _REGISTERED, _PENDING = True, False
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterImport)]
    from endist_seq.safe_globals import register_fairseq_safe_globals

    register_fairseq_safe_globals()
    from endist_seq import criterions, tasks  # noqa: F401  (registration side effects)


def _initializing(name: str) -> bool:
    return bool(getattr(getattr(sys.modules.get(name), "__spec__", None), "_initializing", False))


def _any_trigger_initializing(except_name: str) -> bool:
    return any(_initializing(name) for name in _TRIGGERS if name != except_name)


def _any_endist_module_initializing(except_name: str) -> bool:
    return any(_initializing(name) for name in list(sys.modules) if name.startswith("endist_seq.") and name != except_name)


def _after_import(fullname: str) -> None:
    """Called when the import of ``fullname`` (torch, fairseq or an endist_seq module) has executed its body."""
    global _PENDING
    if _REGISTERED:
        return
    if fullname in _TRIGGERS:
        if _any_trigger_initializing(except_name=fullname):  # e.g. torch finished inside fairseq's import: wait for fairseq
            return
    elif not _PENDING:
        return
    if _any_endist_module_initializing(except_name=fullname):
        _PENDING = True  # registration would import that half-initialised module: after the outermost one
        return
    register_with_fairseq()


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of torch/fairseq (and, until the registration, of every endist_seq
    module) so that the registration follows their import (:func:`_after_import`)."""

    def __init__(self) -> None:
        self._searching = False

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None):  # noqa: D401
        watched = fullname in _TRIGGERS or fullname.startswith("endist_seq.")
        if not watched or _REGISTERED or self._searching:
            return None
        self._searching = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            _after_import(fullname)

        loader.exec_module = exec_then_register
        return spec


if any(name in sys.modules for name in _TRIGGERS):
    register_with_fairseq()
else:
    sys.meta_path.insert(0, _RegisterAfterImport())
