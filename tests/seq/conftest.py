"""Fixtures for the sequence (fairseq plugin) tests.

Session fixtures build the toy data and train tiny teachers *once per test run*,
shared by all pytest-xdist workers: results are cached under the run's common
base temp dir and guarded by an ``fcntl.flock`` file lock, so the first worker
builds them and the others wait and reuse them.

Public fixtures (also used by ``tests/seq/test_generate_*.py``):

* ``toy_raw`` — raw text dir from ``python -m endist_seq.toy_corpus``
  (``{train,valid,test,test_permuted,test_unseen}.{en,de}``, ``manifest.json``).
* ``toy_data_bin`` — ``fairseq-preprocess`` output of ``toy_raw``
  (subsets train/valid/test, ``test1`` = permuted source, ``test2`` = unseen source).
* ``teacher_checkpoints`` — list of 2 teacher checkpoint paths (seeds 1 and 2).
* ``student_checkpoint`` — a short Proxy-EnD² (``rkl_dirichlet_proxy_distillation``,
  ``--model-offset 1``) student distilled from ``teacher_checkpoints``; its training
  log is ``student_checkpoint.parent / "train.log"``.

All are built with ``scripts/seq/toy_pipeline.sh`` and the real fairseq tools,
exactly as a user (or the demo) would.
"""

import os
import sys
from pathlib import Path
from typing import List

import pytest

from seq_helpers import N_TEACHERS, PIPELINE, STUDENT_UPDATES, TEACHER_UPDATES, cached, check, distill_cmd, run


# ---------------------------------------------------------------- cross-worker cache
@pytest.fixture(scope="session")
def seq_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by all xdist workers of this test run (not across runs)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # workers' basetemps are siblings under the run's root
    root = base / "seq_cache"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def toy_pipeline_dir(seq_cache_root: Path) -> Path:
    """Toy data + ``N_TEACHERS`` teachers built by ``toy_pipeline.sh OUT teachers``."""

    def build(out: Path) -> None:
        check(
            run(
                ["bash", PIPELINE, out, "teachers"],
                TEACHERS=str(N_TEACHERS),
                TEACHER_UPDATES=str(TEACHER_UPDATES),
                JOBS="2",
                PYTHON=sys.executable,
            )
        )

    return cached(seq_cache_root, "toy_pipeline", build)


@pytest.fixture(scope="session")
def toy_raw(toy_pipeline_dir: Path) -> Path:
    return toy_pipeline_dir / "raw"


@pytest.fixture(scope="session")
def toy_data_bin(toy_pipeline_dir: Path) -> Path:
    return toy_pipeline_dir / "data-bin"


@pytest.fixture(scope="session")
def teacher_checkpoints(toy_pipeline_dir: Path) -> List[Path]:
    paths = [toy_pipeline_dir / "teachers" / f"teacher{i}" / "checkpoint_last.pt" for i in range(1, N_TEACHERS + 1)]
    for path in paths:
        assert path.is_file(), f"teacher checkpoint missing: {path}"
    return paths


@pytest.fixture(scope="session")
def student_checkpoint(seq_cache_root: Path, toy_data_bin: Path, teacher_checkpoints: List[Path]) -> Path:
    """A Proxy-EnD² student (reverse KL, model offset 1), ``STUDENT_UPDATES`` updates."""

    def build(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        proc = run(
            distill_cmd(
                toy_data_bin, out, teacher_checkpoints, "rkl_dirichlet_proxy_distillation",
                extra=["--init-temp", "2", "--final-temp", "1", "--anneal-start", "20", "--anneal-end", "100"],
                max_update=STUDENT_UPDATES,
            )
        )
        (out / "train.log").write_text(proc.stdout + proc.stderr)
        check(proc)

    path = cached(seq_cache_root, "student_rkl", build) / "checkpoint_last.pt"
    assert path.is_file()
    return path
