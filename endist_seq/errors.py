"""endist's own user errors inside ``fairseq-train`` / ``fairseq-generate``, and how they are printed.

fairseq's command-line tools have no hook for a plugin's error messages: an
exception raised by a task or criterion ends the tool with a Python traceback.
For *endist's own* user errors (a bad teacher or ``--path`` checkpoint, a bad
flag value, a dictionary mismatch) that is noise around one useful line, so:

* every such error is an :class:`EndistUserError` (a ``ValueError``, so code
  that catches ``ValueError`` keeps working); its message is one line that names
  the flag and/or the file;
* importing the plugin (``--user-dir endist_seq``) installs
  :func:`endist_excepthook` as ``sys.excepthook``. Python calls it only for an
  exception that nobody caught, right before the interpreter exits. For an
  :class:`EndistUserError` it prints ``error: <message>`` to stderr; the
  interpreter then exits with status 1, as for any uncaught exception. Every
  other exception (fairseq's own errors, bugs) goes to the previous hook
  unchanged, i.e. with its full traceback.

Code that calls fairseq in-process (tests, notebooks) sees the exception itself:
the hook only acts at the very end of an uncaught exception.
"""

from __future__ import annotations

import math
import sys
from types import TracebackType
from typing import Any, Callable, Iterable, Optional, Type

_ExceptHook = Callable[[Type[BaseException], BaseException, Optional[TracebackType]], Any]
_previous_hook: Optional[_ExceptHook] = None


class EndistUserError(ValueError):
    """A mistake in endist's input (flag, checkpoint, dictionary), described in one line."""


class FlagError(EndistUserError):
    """A command-line flag of an endist task or criterion has an invalid value."""


def one_line(message: str) -> str:
    """``message`` with its line breaks folded into spaces."""
    return " ".join(str(message).split())


def endist_excepthook(exc_type: Type[BaseException], exc: BaseException, tb: Optional[TracebackType]) -> None:
    """``error: <message>`` for an uncaught :class:`EndistUserError`; anything else to the previous hook."""
    if isinstance(exc, EndistUserError):
        sys.stderr.write(f"error: {one_line(str(exc))}\n")
        sys.stderr.flush()
        return
    (_previous_hook or sys.__excepthook__)(exc_type, exc, tb)


def install_excepthook() -> None:
    """Install :func:`endist_excepthook` once (idempotent; keeps the hook that was there before)."""
    global _previous_hook
    if sys.excepthook is endist_excepthook:
        return
    _previous_hook = sys.excepthook
    sys.excepthook = endist_excepthook


def config_value(cfg: Any, name: str, default: Any = None) -> Any:
    """``cfg.name``, or ``default`` when missing or an omegaconf interpolation that cannot be resolved here."""
    try:
        value = getattr(cfg, name, default)
    except Exception:  # noqa: BLE001 - omegaconf raises its own errors for unresolvable "${...}" values
        return default
    if isinstance(value, str) and value.startswith("${"):
        return default
    return value


def check_finite_flags(cfg: Any, names: Iterable[str]) -> None:
    """Raise :class:`FlagError` naming ``--flag`` if a float field of ``cfg`` is NaN or ±Inf.

    ``names`` are config field names (``init_temp`` → ``--init-temp``); missing
    fields and ``None`` values are skipped.
    """
    for name in names:
        value = config_value(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(float(value)):
            raise FlagError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


def float_fields(dataclass_type: Any) -> list:
    """Names of the ``float`` / ``Optional[float]`` fields of a config dataclass."""
    import dataclasses
    import typing

    names = []
    for field in dataclasses.fields(dataclass_type):
        hint = field.type
        args = typing.get_args(hint)
        if hint is float or (args and float in args and all(a in (float, type(None)) for a in args)):
            names.append(field.name)
    return names
