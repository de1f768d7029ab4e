"""Progress bars for long loops: drawn on a terminal, silent in logs and CI.

One setting for every endist command line (``endist-vision``, ``endist-seq-eval``)::

    --progress auto   a bar on stderr only when stderr is a terminal (the default)
    --progress on     always draw the bar (e.g. under ``script`` or a log viewer that renders \\r)
    --progress off    never draw a bar

Without the flag, the environment variable ``ENDIST_PROGRESS`` (same three values) decides, else ``auto``.
A bar that is not drawn prints nothing at all (a log or a pipe receives no ``\\r`` lines).

This module imports only :mod:`tqdm` (cheap at start-up); it never imports torch or fairseq.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Optional, TextIO

from tqdm import tqdm

MODES = ("auto", "on", "off")
ENV_VAR = "ENDIST_PROGRESS"
FALLBACK_COLUMNS, FALLBACK_ROWS = 80, 20  # bar size on a terminal that reports none (e.g. a container's pty)

_mode: Optional[str] = None  # set by a command line's --progress flag (None: ENDIST_PROGRESS, else auto)


def check_mode(mode: str, where: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else ``ValueError`` naming ``where`` (a flag or variable)."""
    if mode not in MODES:
        raise ValueError(f"{where} must be one of {'|'.join(MODES)}, got {mode!r}")
    return mode


def set_progress(mode: Optional[str]) -> str:
    """Set the process-wide default (a command line's ``--progress``); ``None`` keeps ``ENDIST_PROGRESS``/auto.
    Returns the mode in effect; an invalid flag value or ``ENDIST_PROGRESS`` raises ``ValueError`` here, at
    start-up, not inside a loop."""
    global _mode
    _mode = None if mode is None else check_mode(mode, "--progress")
    return progress_mode()


def reset_progress() -> None:
    """Forget a command line's ``--progress`` (at the end of a command run in-process: tests, notebooks)."""
    global _mode
    _mode = None


def progress_mode(mode: Optional[str] = None) -> str:
    """The mode in effect: ``mode`` if given, else the command line's ``--progress``, else ``ENDIST_PROGRESS``,
    else ``"auto"``."""
    if mode is not None:
        return check_mode(mode, "progress mode")
    if _mode is not None:
        return _mode
    env = os.environ.get(ENV_VAR, "").strip().lower()
    return check_mode(env, ENV_VAR) if env else "auto"


def progress_enabled(mode: Optional[str] = None, stream: Optional[TextIO] = None) -> bool:
    """Whether a bar is drawn: ``on`` → yes, ``off`` → no, ``auto`` → ``stream`` (default stderr) is a terminal."""
    resolved = progress_mode(mode)
    if resolved != "auto":
        return resolved == "on"
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(iterable: Optional[Iterable[Any]] = None, *, desc: Optional[str] = None, total: Optional[float] = None,
             unit: str = "it", mode: Optional[str] = None, leave: bool = False, **kwargs: Any) -> "tqdm[Any]":
    """A :class:`tqdm.tqdm` on stderr over ``iterable`` (or updated by hand with ``total``), disabled unless
    :func:`progress_enabled` (``mode`` as there). ``leave=False``: the bar disappears when the loop ends, so a
    terminal keeps only the command's own output."""
    if "ncols" not in kwargs and "dynamic_ncols" not in kwargs:
        if _terminal_columns(sys.stderr) > 0:
            kwargs["dynamic_ncols"] = True  # follow resizes of the terminal
        else:
            # tqdm would read 0×0 from a size-less pty (as −1 columns and rows) and draw nothing
            kwargs.update(ncols=FALLBACK_COLUMNS, nrows=FALLBACK_ROWS)
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr,
                disable=not progress_enabled(mode), **kwargs)


def _terminal_columns(stream: TextIO) -> int:
    """Width of the terminal behind ``stream`` (0: none, or a pseudo-terminal without a size)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0
