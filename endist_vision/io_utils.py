"""Atomic file writes — re-exported from :mod:`shared.io` (one implementation for the whole toolkit)."""

from shared.io import atomic_savefig, atomic_torch_save, atomic_write_json, atomic_write_text

__all__ = ["atomic_savefig", "atomic_torch_save", "atomic_write_json", "atomic_write_text"]
