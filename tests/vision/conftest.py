"""Fixtures for endist_vision tests: in-process CLI runner and small trained teacher ensembles.

The CLI is exercised through ``endist_vision.cli.main`` (the ``endist-vision`` console-script entry
point) in-process to avoid paying torch's import time per call; a few tests run the real console
script / torchrun as subprocesses to check exit codes and DDP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vision_helpers import FAST, ok

@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-member digits CNN ensemble (vectorised), 120 steps."""
    d = tmp_path_factory.mktemp("digits") / "ensemble"
    ok("train", "--config", "digits/ensemble", "--out", d, *FAST, "method_args.members=4", "train.max_steps=120",
       "data.augment=none", "model.kwargs={width: 8, hidden: 32}")
    return d


@pytest.fixture(scope="session")
def spirals_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-member spiral MLP ensemble, 150 steps."""
    d = tmp_path_factory.mktemp("spirals") / "ensemble"
    ok("train", "--config", "spirals/ensemble", "--out", d, *FAST, "method_args.members=5", "train.max_steps=150",
       "model.kwargs={hidden: 32, depth: 2, activation: tanh}")
    return d


@pytest.fixture(autouse=True)
def _no_debug_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENDIST_TEST_KILL_AFTER_STEP", raising=False)
    monkeypatch.delenv("ENDIST_TEST_STALL_AFTER_STEP", raising=False)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
