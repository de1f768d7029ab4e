"""Progress bars of ``endist-seq-eval`` and the tensorboard scalars of our fairseq criterions (issue 17, item 5).

* ``endist-seq-eval`` run as a real command with its stderr on a pseudo-terminal (``pty.openpty``) draws tqdm
  bars (reading the files, sentence BLEU); on a pipe it prints no bar; ``--progress on`` forces them (the
  other forcings are tested with ``endist-vision``, tests/vision/test_vision_progress_logging.py).
* ``fairseq-train --tensorboard-logdir`` with an endist criterion records α₀, β̂₀ and the annealed temperature
  (logged through ``fairseq.metrics``), read back with tensorboard's ``EventAccumulator``.
"""

from __future__ import annotations

import fcntl
import math
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from endist_seq.eval_cli import main as eval_main
from seq_helpers import REPO, TrainLog, check, distill_cmd, run, seq_env, tool

BAR = re.compile(r"\d+/\d+ \[")  # tqdm's "n/total [elapsed<remaining" field
REF = "the quick brown fox jumps over the lazy dog"


def _generate_output(path: Path, n: int) -> Path:
    """A ``fairseq-generate --compute-uncertainty`` style text output of ``n`` sentences."""
    words = REF.split()
    lines = []
    for i in range(n):
        hyp = " ".join(words[: len(words) - i % 5] + ["x"] * (i % 5))
        lines += [f"S-{i}\tsource {i}", f"T-{i}\t{REF}", f"H-{i}\t-1.0\t{hyp}", f"D-{i}\t-1.0\t{hyp}",
                  f"U-{i}\t0\tscore={-0.1 * i!r}\tpe_total={0.2 * i!r}\tpe_rmi={0.3 * (i % 7)!r}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _seq_eval(tmp_path: Path, where: str, *flags: str, env: Optional[Dict[str, str]] = None) -> tuple[int, str]:
    """Run the ``endist-seq-eval`` console script with stderr on a pseudo-terminal (``where="pty"``, 100 columns)
    or a pipe; returns (exit status, stderr)."""
    ident = _generate_output(tmp_path / "id.txt", 40)
    ood = _generate_output(tmp_path / "ood.txt", 30)
    cmd = [tool("endist-seq-eval"), "--out-dir", str(tmp_path / "report"), "--no-plots", *flags,
           "--model", "m", "--id", str(ident), "--ood", f"far={ood}"]
    environ = seq_env()
    environ.pop("ENDIST_PROGRESS", None)
    environ.update(env or {})
    if where == "pipe":
        proc = subprocess.run(cmd, cwd=REPO, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=300)
        return proc.returncode, proc.stderr.decode("utf-8", "replace")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc_p = subprocess.Popen(cmd, cwd=REPO, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks: List[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the command closed the terminal (exited)
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc_p.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")


def _assert_quiet(text: str) -> None:
    assert "\r" not in text and not BAR.search(text) and "█" not in text, f"a progress bar in a log:\n{text!r}"


def test_seq_eval_bar_on_a_terminal_only(tmp_path: Path) -> None:
    rc, text = _seq_eval(tmp_path, "pty")
    assert rc == 0, text
    assert "reading m" in text and "sentence BLEU" in text and "/40 [" in text, f"no bar on the terminal:\n{text!r}"
    rc, text = _seq_eval(tmp_path, "pipe")
    assert rc == 0, text
    _assert_quiet(text)


def test_seq_eval_progress_flag_and_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    """In-process (stderr captured, not a terminal): ``--progress on`` forces the bars; a bad ``ENDIST_PROGRESS``
    is one error line before anything is written."""
    monkeypatch.delenv("ENDIST_PROGRESS", raising=False)
    ident = _generate_output(tmp_path / "id.txt", 5)
    assert eval_main(["--out-dir", str(tmp_path / "r1"), "--no-plots", "--id", str(ident)]) == 0
    _assert_quiet(capsys.readouterr().err)
    assert eval_main(["--out-dir", str(tmp_path / "r2"), "--no-plots", "--progress", "on", "--id", str(ident)]) == 0
    err = capsys.readouterr().err
    assert "sentence BLEU" in err and BAR.search(err)
    monkeypatch.setenv("ENDIST_PROGRESS", "sometimes")
    assert eval_main(["--out-dir", str(tmp_path / "report"), "--id", str(ident)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "endist-seq-eval: error: ENDIST_PROGRESS must be one of auto|on|off, got 'sometimes'"
    assert not (tmp_path / "report").exists()


def _scalars(logdir: Path) -> Dict[str, List[tuple[int, float]]]:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_fairseq_tensorboard_records_alpha0_beta0_temperature(tmp_path: Path, toy_data_bin: Path,
                                                              teacher_checkpoints: List[Path]) -> None:
    tb = tmp_path / "tb"
    proc = check(run(distill_cmd(
        toy_data_bin, tmp_path / "student", teacher_checkpoints, "sequence_distribution_distillation", max_update=3,
        extra=["--init-temp", "3", "--final-temp", "1", "--anneal-start", "0", "--anneal-end", "2", "--tensorboard-logdir", str(tb)],
    )))
    log = TrainLog.parse(proc.stdout + proc.stderr)
    inner = _scalars(tb / "train_inner")  # fairseq: one writer per log kind, step = number of updates
    for tag in ("alpha0", "beta0", "temperature", "loss", "distill_loss"):
        assert [s for s, _ in inner[tag]] == [1, 2, 3], (tag, inner.get(tag))
        assert all(math.isfinite(v) for _, v in inner[tag])
        # the same values as fairseq's own json log lines (both from fairseq.metrics)
        assert [v for _, v in inner[tag]] == pytest.approx([r[tag] for r in log.train_inner], rel=1e-5)
    # update u (after u − 1 done) anneals linearly from 3 at u − 1 = 0 to 1 at u − 1 = 2
    assert [v for _, v in inner["temperature"]] == pytest.approx([3.0, 2.0, 1.0])
    assert all(v > 0 for _, v in inner["alpha0"]) and all(v > 0 for _, v in inner["beta0"])
    valid = _scalars(tb / "valid")  # the validation at --max-update, at the final temperature
    assert {"alpha0", "beta0", "temperature"} <= set(valid)
    assert valid["temperature"] == [(3, pytest.approx(1.0))]
    assert math.isfinite(valid["alpha0"][0][1]) and valid["beta0"][0][1] > 0
