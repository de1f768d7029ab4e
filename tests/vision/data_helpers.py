"""The stand-in data writers for data tests: ``scripts/lib/standins.py`` is test and recipe tooling, not part
of the installed ``endist_vision`` package, so it is loaded here from its file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _load_script(name: str) -> ModuleType:
    """``scripts/lib/<name>.py`` as the module ``<name>`` (loaded once per process)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "lib" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


standins = _load_script("standins")
