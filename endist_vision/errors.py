"""User-facing error types of :mod:`endist_vision`.

Every error raised for bad user input (config flag, dataset path, checkpoint file) is a subclass of
:class:`EndistVisionError`; the CLI prints ``error: <message>`` and exits with :attr:`exit_code`
(non-zero) without touching existing outputs.
"""

from __future__ import annotations


class EndistVisionError(Exception):
    """Base class: a clear, user-actionable error. ``exit_code`` is the CLI exit status."""

    exit_code: int = 2


class ConfigError(EndistVisionError):
    """Invalid config key/value or command-line override (names the key)."""


class DatasetError(EndistVisionError):
    """Missing or malformed dataset directory/file (names the path and the config flag)."""

    exit_code = 3


class ResultFileError(EndistVisionError):
    """Missing, corrupt or foreign evaluation output (``eval.json``, ``uncertainty_map.npz``) given to
    ``compare`` (names the file)."""


class CheckpointError(EndistVisionError):
    """Missing, corrupt or incompatible checkpoint (names the file)."""

    exit_code = 4
