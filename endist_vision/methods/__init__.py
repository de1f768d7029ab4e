"""Method registry. Every module in this package is imported automatically, so a new method is one
file ``endist_vision/methods/<name>.py`` containing::

    from endist_vision.methods import Method, register_method

    @register_method("my_method")
    class MyMethod(Method):
        needs_teacher = True
        def loss(self, student_out, teacher_log_probs, step, *, labels=None): ...

No edit of the trainer is needed. See ``endist_vision/README_internal.md`` for the full contract.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from typing import Callable

from endist_vision.registry import Registry

from .base import Method, resolved_run_config

METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a :class:`Method` subclass under ``name`` (sets ``cls.name``);
    a second, different class under a taken name raises ``ValueError``."""
    register = METHODS.register(name)

    def deco(cls: type[Method]) -> type[Method]:
        register(cls)
        cls.name = name
        return cls

    return deco


def get_method(name: str) -> type[Method]:
    """The registered class for ``name`` (KeyError listing the available ones otherwise, and any
    plug-in method modules that failed to import)."""
    if name not in METHODS:
        broken = "".join(f"; module {m} failed to import: {e}" for m, e in _IMPORT_ERRORS.items())
        raise KeyError(f"unknown method {name!r}; available: {', '.join(available_methods())}{broken}")
    return METHODS.get(name)


def available_methods() -> list[str]:
    return METHODS.names()


_BUILTIN = ("individual", "ensemble", "end", "end2", "proxy_end2")
_IMPORT_ERRORS: dict[str, str] = {}

for _name in _BUILTIN:
    importlib.import_module(f"{__name__}.{_name}")
for _info in pkgutil.iter_modules(__path__):
    if _info.name in _BUILTIN or _info.name == "base" or _info.name.startswith("_"):
        continue
    try:  # a broken plug-in method must not take the built-in methods down with it
        importlib.import_module(f"{__name__}.{_info.name}")
    except Exception as _e:  # noqa: BLE001
        _IMPORT_ERRORS[f"{__name__}.{_info.name}"] = f"{type(_e).__name__}: {_e}"
        warnings.warn(f"endist_vision: method module {_info.name!r} failed to import ({type(_e).__name__}: {_e})", stacklevel=1)

__all__ = ["Method", "register_method", "get_method", "available_methods", "resolved_run_config"]
