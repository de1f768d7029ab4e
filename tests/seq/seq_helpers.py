"""Helpers for the sequence tests: running the real fairseq tools, parsing their logs, a cross-worker cache.

Imported by ``tests/seq/conftest.py`` and by test modules (``from seq_helpers import ...``).
"""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PIPELINE = REPO / "scripts" / "seq" / "toy_pipeline.sh"
N_TEACHERS = 2  # teacher_checkpoints fixture
TEACHER_UPDATES = 300
STUDENT_UPDATES = 150  # student_checkpoint fixture
#: tiny transformer shared by teachers, students and the demo
MODEL_ARGS: List[str] = (REPO / "scripts" / "seq" / "toy_model.args").read_text().split()


def seq_env(**extra: str) -> Dict[str, str]:
    """Environment for the fairseq tools: the venv's bin first, one thread, no GPU."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def tool(name: str) -> str:
    """Path of a console script of the test interpreter's environment."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH")
    return found


def run(cmd: Sequence[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run a command from the repository root, capturing text output."""
    return subprocess.run(
        [str(c) for c in cmd], cwd=REPO, env=seq_env(**env), capture_output=True, text=True, timeout=timeout
    )


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Fail with the command's output tail if it exited non-zero."""
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-6000:]
        raise AssertionError(f"command failed (rc={proc.returncode}): {' '.join(map(str, proc.args))}\n{tail}")
    return proc


# ---------------------------------------------------------------- fairseq log parsing
_LOG_RE = re.compile(r"\| (train_inner|train|valid) \| (\{.*\})\s*$")


@dataclass
class TrainLog:
    """Records of a ``fairseq-train --log-format json`` run, by kind, values as floats where possible."""

    text: str
    train_inner: List[Dict[str, float]]
    train: List[Dict[str, float]]
    valid: List[Dict[str, float]]

    @classmethod
    def parse(cls, text: str) -> "TrainLog":
        kinds: Dict[str, List[Dict[str, float]]] = {"train_inner": [], "train": [], "valid": []}
        for line in text.splitlines():
            match = _LOG_RE.search(line)
            if match:
                raw = json.loads(match.group(2))
                rec = {}
                for key, value in raw.items():
                    try:
                        rec[key.split("_", 1)[1] if key.startswith(("train_", "valid_")) else key] = float(value)
                    except (TypeError, ValueError):
                        pass
                kinds[match.group(1)].append(rec)
        return cls(text, kinds["train_inner"], kinds["train"], kinds["valid"])


def distill_cmd(
    data: Path,
    save_dir: Path,
    teachers: Sequence[Path],
    criterion: str = "rkl_dirichlet_proxy_distillation",
    extra: Sequence[str] = (),
    max_update: int = 50,
    seed: int = 100,
) -> List[str]:
    """A ``fairseq-train`` command distilling ``teachers`` into a tiny student (CPU, json logs every update)."""
    return [
        tool("fairseq-train"), str(data), "--user-dir", "endist_seq", "--task", "ensemble_distillation",
        "--ensemble-paths", ",".join(map(str, teachers)), "--criterion", criterion,
        "--cpu", "--num-workers", "0", "--seed", str(seed), *MODEL_ARGS,
        "--optimizer", "adam", "--lr", "5e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20",
        "--batch-size", "64", "--dropout", "0.1", "--max-update", str(max_update),
        "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "1",
        "--data-buffer-size", "0",
        *extra,
    ]


def setup_distillation_task(data: Path, teachers: Sequence[Path], *extra: str):
    """``(task, cfg)`` of ``fairseq-train`` with :func:`distill_cmd`'s arguments, parsed and set up in-process.

    fairseq's own parser and ``tasks.setup_task`` (the task's flag checks run);
    ``task.build_criterion(cfg.criterion)`` then loads the teachers as training would.
    """
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = distill_cmd(data, data.parent / "unused_save", teachers, max_update=1)[1:]
    args = options.parse_args_and_arch(options.get_training_parser(), [*argv, *extra])
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task), cfg


def load_checkpoint_state(path: Path) -> Dict[str, object]:
    """``torch.load`` a fairseq checkpoint weights-only (fairseq's config objects allow-listed by ``endist_seq``)."""
    import torch

    import endist_seq  # noqa: F401  (registers the safe globals)

    return torch.load(path, map_location="cpu", weights_only=True)


def model_params(path: Path) -> Dict[str, "object"]:
    """The model state dict of a checkpoint, as float64 tensors."""
    state = load_checkpoint_state(path)
    return {k: v.double() for k, v in state["model"].items()}  # type: ignore[union-attr]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive ``fcntl.flock`` on ``path`` (blocks until the other worker releases it)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(root: Path, name: str, build: Callable[[Path], None]) -> Path:
    """Build ``root/name`` once across workers; a ``.complete`` marker means it is done."""
    target = root / name
    with file_lock(root / f"{name}.lock"):
        if not (target / ".complete").exists():
            build(target)
            (target / ".complete").touch()
    return target
