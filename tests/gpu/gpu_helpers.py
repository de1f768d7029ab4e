"""Helpers of the GPU checks (imported by ``tests/gpu/test_*.py``)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests" / "seq"))

from seq_helpers import check, tool  # noqa: E402,F401  (re-exported: the same helpers as the CPU seq tests)


def gpu_env(**extra: str) -> Dict[str, str]:
    """Environment for subprocesses on the GPU: this interpreter's bin first, the caller's CUDA_VISIBLE_DEVICES."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONWARNINGS"] = "ignore"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def run(cmd: Sequence[Any], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=REPO, env=gpu_env(**env), capture_output=True, text=True,
                          timeout=timeout)


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
