"""glibc malloc settings for endist's own commands (never applied at library import).

CPU inference and training allocate and free the same large activation blocks every batch. With
glibc's defaults a block above the (dynamic) mmap threshold is ``mmap``'d and ``munmap``'d each time,
and freed memory at the top of the heap is trimmed back to the OS, so every batch page-faults its
activations in again (issue 16: 34 % of a single net's and 61 % of a BatchEnsemble's CPU inference
time were kernel page faults). :func:`tune_malloc` calls ``mallopt`` so that

* ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum on 64-bit): blocks up to 32 MiB come from the heap
  and are reused; bigger ones are still ``mmap``'d;
* ``M_TRIM_THRESHOLD`` = 1 GiB: up to 1 GiB of free memory at the heap top is kept for the next batch.

This is what ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824`` does from the
environment. It is skipped when the user set either variable or ``GLIBC_TUNABLES`` (theirs wins),
when ``ENDIST_MALLOC_TUNING=0``, and on a C library without ``mallopt`` (musl, macOS): then it
returns ``False`` and changes nothing. The process keeps up to 1 GiB more resident memory; that is
the price, paid only by the ``endist-vision`` command that calls it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Mapping, Optional

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc refuses more than HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _glibc() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # glibc only: other C libraries' mallopt differs or is absent
        libc.mallopt
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def tune_malloc(environ: Mapping[str, str] = os.environ) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; ``True`` if both ``mallopt`` calls took effect."""
    if environ.get("ENDIST_MALLOC_TUNING", "1") == "0" or any(k in environ for k in USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok_mmap = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok_trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return ok_mmap and ok_trim
