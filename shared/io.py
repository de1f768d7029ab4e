"""Atomic file writes (used by endist_seq and endist_vision): write to a temp file in the same directory, then ``os.replace``.

A crash mid-write never leaves a half-written or truncated output in place of a good one.
The final file has the permissions of a file made by ``open(path, "w")``: mode 0o666 minus the
process umask (e.g. 0o644 under umask 022), not the 0o600 of :func:`tempfile.mkstemp` — the temp
file is created with ``os.open(..., 0o666)``, so the kernel applies the umask itself (no racy
``os.umask`` read-and-restore; default ACLs of the directory apply too).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable



def _atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _create_temp(path: Path) -> str:
    """Create an empty ``.NAME.<random>.tmp`` beside ``path`` with mode 0o666 & ~umask (exclusive create)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    _atomic(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """Atomically ``torch.save`` ``obj`` to ``path``."""
    import torch  # lazy: text/JSON writers must not cost torch's import

    _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_savefig(path: str | os.PathLike, fig: Any, **kw: Any) -> None:
    """Atomically save a matplotlib figure (format inferred from ``path``'s suffix)."""
    suffix = Path(path).suffix.lstrip(".") or "png"
    _atomic(path, lambda tmp: fig.savefig(tmp, format=suffix, **kw))


def _json_default(o: Any) -> Any:
    torch = sys.modules.get("torch")  # an object can only be a tensor once torch is imported
    if torch is not None and isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte pieces (how teacher caches identify their teachers)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
