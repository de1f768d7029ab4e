"""Helpers of the GPU checks (imported by ``tests/gpu/test_*.py``)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def gpu_env(**extra: str) -> Dict[str, str]:
    """Environment for subprocesses on the GPU: this interpreter's bin first, the caller's CUDA_VISIBLE_DEVICES."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONWARNINGS"] = "ignore"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def tool(name: str) -> str:
    """A console script next to this interpreter, else on PATH."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH")
    return found


def run(cmd: Sequence[Any], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=REPO, env=gpu_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-6000:]
        raise AssertionError(f"command failed (rc={proc.returncode}): {' '.join(map(str, proc.args))}\n{tail}")
    return proc


def numbers(obj: Any, path: str = "") -> Iterator[Tuple[str, float]]:
    """Every int/float leaf of a JSON-like object with its path (bools excluded)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, float(obj)


def non_finite(obj: Any) -> Dict[str, float]:
    return {p: v for p, v in numbers(obj) if not math.isfinite(v)}
