"""Fixtures and helpers of the generation-uncertainty tests (``test_generate_*.py``).

Import the fixtures into a test module (``from generate_fixtures import proxy_student``).
They build on ``tests/seq/conftest.py``'s toy data and teachers.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest

from seq_helpers import REPO, cached, check, distill_cmd, run

GENERATE_BATCH = REPO / "tests" / "seq" / "generate_batch.py"
#: flags shared by every generation in these tests (beam 4, CPU, outputs capped for garbage inputs)
GEN_FLAGS: List[str] = ["--beam", "4", "--batch-size", "100", "--cpu", "--num-workers", "0", "--max-len-b", "30"]
#: Proxy-EnD² student for the generation tests: longer than conftest's ``student_checkpoint``
#: so that its translations (BLEU) match the ensemble's; same reverse-KL criterion, offset 1
PROXY_STUDENT_UPDATES = 400
PROXY_STUDENT_OFFSET = 1.0


def uncertainty_args(data: Path, paths: Sequence[Path], subset: str, results: Path, *extra: str) -> List[str]:
    """Arguments of ``fairseq-generate`` with the ``translation_uncertainty`` task."""
    return [
        str(data), "--user-dir", "endist_seq", "--task", "translation_uncertainty", "--compute-uncertainty",
        "--path", ":".join(map(str, paths)), "--gen-subset", subset, *GEN_FLAGS, "--results-path", str(results),
        *extra,
    ]


def run_generate_batch(runs: Sequence[Any], workdir: Path) -> subprocess.CompletedProcess:
    """Run ``runs`` (see ``generate_batch.py``) in one process; fail with its output tail on error."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / "runs.json"
    spec.write_text(json.dumps(list(runs)))
    proc = run([sys.executable, GENERATE_BATCH, spec])
    (workdir / "batch.log").write_text(proc.stdout + proc.stderr)
    return check(proc)


def results_file(results: Path, subset: str) -> Path:
    return results / f"generate-{subset}.txt"


@pytest.fixture(scope="session")
def proxy_student(seq_cache_root: Path, toy_data_bin: Path, teacher_checkpoints: List[Path]) -> Path:
    """A Proxy-EnD² (``rkl_dirichlet_proxy_distillation``, model offset 1) student of the toy teachers."""

    def build(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        proc = run(
            distill_cmd(
                toy_data_bin, out, teacher_checkpoints, "rkl_dirichlet_proxy_distillation",
                extra=["--model-offset", str(PROXY_STUDENT_OFFSET), "--disable-validation"],
                max_update=PROXY_STUDENT_UPDATES,
            )
        )
        (out / "train.log").write_text(proc.stdout + proc.stderr)
        check(proc)

    path = cached(seq_cache_root, f"proxy_student_{PROXY_STUDENT_UPDATES}", build) / "checkpoint_last.pt"
    assert path.is_file(), path
    return path


def parse_token_lines(path: Path) -> Dict[int, Dict[int, Dict[str, Any]]]:
    """``UT-`` lines: ``{id: {rank: {measure: [values] or None}}}``."""
    out: Dict[int, Dict[int, Dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("UT-"):
            continue
        head, rank, *pairs = line.split("\t")
        values: Dict[str, Any] = {}
        for pair in pairs:
            name, _, text = pair.partition("=")
            values[name] = None if text == "undefined" else [float(v) for v in text.split(",")]
        out.setdefault(int(head[3:]), {})[int(rank)] = values
    return out
