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
from typing import Callable

from .base import Method

_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a :class:`Method` subclass under ``name`` (sets ``cls.name``)."""

    def deco(cls: type[Method]) -> type[Method]:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__module__}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def get_method(name: str) -> type[Method]:
    """The registered class for ``name`` (KeyError listing the available ones otherwise)."""
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    return _METHODS[name]


def available_methods() -> list[str]:
    return sorted(_METHODS)


for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base" and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Method", "register_method", "get_method", "available_methods"]
