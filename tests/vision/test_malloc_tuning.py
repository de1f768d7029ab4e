"""``endist_vision/_malloc.py``: the endist-vision command (only it, never an import) keeps ≤ 32 MiB blocks off mmap.

Checked on glibc itself: ``mallinfo2().hblkhd`` (bytes in mmap'd chunks) grows by a fresh 20 MiB
``malloc`` with glibc's defaults and does not after ``tune_malloc()`` / ``endist-vision`` start-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from endist_vision._malloc import tune_malloc

REPO = Path(__file__).resolve().parents[2]

PROBE = r'''
import contextlib, ctypes, io, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
mode = sys.argv[1]
if mode == "import":
    import endist_vision, endist_vision.cli, endist_vision.models  # library imports must not change malloc
elif mode == "cli":
    import endist_vision.cli
    with contextlib.redirect_stdout(io.StringIO()):
        endist_vision.cli.main(["list"])
elif mode == "tune":
    from endist_vision._malloc import tune_malloc
    assert tune_malloc() is True
before = libc.mallinfo2().hblkhd
block = libc.malloc(20 << 20)
print((libc.mallinfo2().hblkhd - before) >> 20)
'''


def _mmapped_mib(mode: str, **env: str) -> int:
    full = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                           "GLIBC_TUNABLES", "ENDIST_MALLOC_TUNING")}
    full.update(env, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.split()[-1])


def test_glibc_default_mmaps_the_block_and_tune_malloc_keeps_it_on_the_heap() -> None:
    assert _mmapped_mib("none") == 20
    assert _mmapped_mib("tune") == 0


def test_importing_endist_vision_leaves_malloc_alone_the_command_tunes_it() -> None:
    assert _mmapped_mib("import") == 20
    assert _mmapped_mib("cli") == 0


@pytest.mark.parametrize("env", [{"ENDIST_MALLOC_TUNING": "0"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"MALLOC_TRIM_THRESHOLD_": "0"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}])
def test_user_settings_win(env: dict[str, str]) -> None:
    assert tune_malloc(env) is False  # returns before any mallopt call: this process is untouched
