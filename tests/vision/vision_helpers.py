"""Helpers for endist_vision tests (imported by the test modules and conftest)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from endist_vision.cli import main

REPO = Path(__file__).resolve().parents[2]


def bin_path(name: str) -> str:
    """A console script of this venv (next to the running interpreter), else on PATH."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else (shutil.which(name) or name)


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``endist-vision ARGS`` in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def ok(*args: str) -> str:
    code, out, err = run_cli(*args)
    assert code == 0, f"endist-vision {' '.join(map(str, args))} failed ({code}):\n{err}\n{out}"
    return out


def read_eval(d: Path) -> dict[str, Any]:
    return json.loads((d / "eval.json").read_text())


FAST = ["train.progress=false", "train.log_every=5"]


