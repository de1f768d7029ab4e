"""Environment for ``endist-vision`` subprocesses with test-only faults (see ``fault_plugin/sitecustomize.py``):
a simulated SIGKILL after step N, or one rank of a torchrun job hanging after step N."""

from __future__ import annotations

import os
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent / "fault_plugin"
KILL_ENV = "ENDIST_TEST_KILL_AFTER_STEP"
STALL_ENV = "ENDIST_TEST_STALL_AFTER_STEP"


def fault_env(*, kill_after: int | None = None, stall: tuple[int, int] | None = None) -> dict[str, str]:
    """``os.environ`` plus the plugin on PYTHONPATH and the fault variables (``stall`` = (rank, step))."""
    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, STALL_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_DIR), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    if kill_after is not None:
        env[KILL_ENV] = str(kill_after)
    if stall is not None:
        env[STALL_ENV] = f"{stall[0]}:{stall[1]}"
    return env
