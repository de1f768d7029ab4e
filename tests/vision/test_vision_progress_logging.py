"""Progress bars and tensorboard scalars of ``endist-vision`` (issue 17, item 5).

Bars: the real CLI (in this process) with its stderr on a pseudo-terminal (``pty.openpty``) draws tqdm bars;
on a pipe it prints no bar at all; ``--progress on|off`` and ``ENDIST_PROGRESS`` force them.
Tensorboard: tiny digits runs (an ensemble teacher, EnD², Proxy-EnD², BatchEnsemble) are read back with
tensorboard's ``EventAccumulator``: the tags, their steps, finite values, the EnD² temperature against the
closed-form schedule, and the final validation scalars against ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import pty
import re
import struct
import termios
import threading
from pathlib import Path
from typing import Callable

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from endist_vision.cli import main
from shared.progress import ENV_VAR
from vision_helpers import ok

TINY = ["model.kwargs={width: 4, hidden: 8}", "train.batch_size=256", "train.epochs=2", "train.log_every=1",
        "data.ood=[]", "data.augment=none"]
BAR = re.compile(r"\d+/\d+ \[")  # tqdm's "n/total [elapsed<remaining" field


def _stderr_of(kind: str, fn: Callable[[], int], columns: int = 0) -> tuple[int, str]:
    """Run ``fn`` with ``sys.stderr`` writing into a pseudo-terminal (``kind="pty"``, ``columns`` wide; 0: a
    terminal without a size, as some containers give) or an OS pipe (``"pipe"``); returns (its result,
    everything written there)."""
    read_fd, write_fd = pty.openpty() if kind == "pty" else os.pipe()
    if columns:
        fcntl.ioctl(write_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(read_fd, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not data:
                break
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    with os.fdopen(write_fd, "w", buffering=1, encoding="utf-8") as stream, open(os.devnull, "w") as null:
        assert stream.isatty() == (kind == "pty")
        with contextlib.redirect_stderr(stream), contextlib.redirect_stdout(null):
            result = fn()
    reader.join(timeout=60)
    os.close(read_fd)
    return result, b"".join(chunks).decode("utf-8", "replace")


def _assert_quiet(text: str) -> None:
    assert "\r" not in text and not BAR.search(text) and "█" not in text, f"a progress bar in a log:\n{text!r}"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-member ensemble trained on a terminal: the training bar must be drawn there."""
    run = tmp_path_factory.mktemp("progress") / "ens"
    rc, text = _stderr_of("pty", lambda: main(["train", "--config", "digits/ensemble", "--out", str(run),
                                                "method_args.members=2", *TINY]), columns=100)
    assert rc == 0, text
    total = json.loads((run / "metrics.json").read_text())["total_steps"]
    assert "ensemble:" in text and f"{total}/{total} [" in text, f"no training bar on the terminal:\n{text!r}"
    assert "validation" in text  # the per-epoch validation loop has its bar too
    return run


def test_bars_on_a_terminal_only_and_forced(teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    evaluate = ["evaluate", "--run", str(teacher), "--no-plots"]
    rc, text = _stderr_of("pipe", lambda: main([*evaluate, "--out", str(tmp_path / "e1")]))
    assert rc == 0
    _assert_quiet(text)
    rc, text = _stderr_of("pty", lambda: main([*evaluate, "--out", str(tmp_path / "e2")]))
    assert rc == 0 and "predict test" in text and BAR.search(text), f"no evaluation bar on the terminal:\n{text!r}"
    rc, text = _stderr_of("pty", lambda: main([*evaluate, "--out", str(tmp_path / "e3"), "--progress", "off"]))
    assert rc == 0
    _assert_quiet(text)
    rc, text = _stderr_of("pipe", lambda: main([*evaluate, "--out", str(tmp_path / "e4"), "--progress", "on"]))
    assert rc == 0 and "predict test" in text and BAR.search(text)
    monkeypatch.setenv(ENV_VAR, "on")  # the environment variable, when no flag is given
    rc, text = _stderr_of("pipe", lambda: main([*evaluate, "--out", str(tmp_path / "e5")]))
    assert rc == 0 and BAR.search(text)
    monkeypatch.setenv(ENV_VAR, "sometimes")
    rc, text = _stderr_of("pipe", lambda: main([*evaluate, "--out", str(tmp_path / "e6")]))
    assert rc == 2 and text.strip() == "error: ENDIST_PROGRESS must be one of auto|on|off, got 'sometimes'"
    assert not (tmp_path / "e6").exists()


def test_training_bar_quiet_on_a_pipe(teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    run = tmp_path / "ind"
    rc, text = _stderr_of("pipe", lambda: main(["train", "--config", "digits/individual", "--out", str(run), *TINY,
                                                 "train.max_steps=3"]))
    assert rc == 0
    _assert_quiet(text)
    # train.progress=true draws the bar even on a pipe; --progress off wins over it
    rc, text = _stderr_of("pipe", lambda: main(["train", "--config", "digits/individual", "--out", str(tmp_path / "on"),
                                                 *TINY, "train.max_steps=3", "train.progress=true"]))
    assert rc == 0 and "individual:" in text and "3/3 [" in text
    rc, text = _stderr_of("pty", lambda: main(["train", "--config", "digits/individual", "--out", str(tmp_path / "off"),
                                                "--progress", "off", *TINY, "train.max_steps=3", "train.progress=true"]))
    assert rc == 0
    _assert_quiet(text)


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _check_run(run: Path, tags: set[str], val_every: int = 1) -> dict[str, list[tuple[int, float]]]:
    """Every expected tag present with finite values: ``train/*`` at each step 1..total (log_every=1),
    ``val/*`` at the end of every ``val_every``-th epoch and the last step, the final model's values equal to
    metrics.json's."""
    metrics = json.loads((run / "metrics.json").read_text())
    total, spe = metrics["total_steps"], metrics["steps_per_epoch"]
    sc = _scalars(run)
    assert tags | {"train/loss", "train/lr", "val/accuracy", "val/nll", "val/ece"} <= set(sc), sorted(sc)
    for tag, points in sc.items():
        assert all(math.isfinite(v) for _, v in points), (run.name, tag, points)
        steps = [s for s, _ in points]
        assert steps == (list(range(1, total + 1)) if tag.startswith(("train/", "distill/")) else
                         [*range(val_every * spe, total, val_every * spe), total]), (run.name, tag, steps)
    for k in ("accuracy", "nll", "ece"):
        assert sc[f"val/{k}"][-1][1] == pytest.approx(metrics["val"][k], rel=1e-6)
    assert [r["loss"] for r in metrics["history"]] == pytest.approx([v for _, v in sc["train/loss"]], rel=1e-6)
    return sc


def test_tensorboard_scalars(teacher: Path, tmp_path: Path) -> None:
    sc = _check_run(teacher, set())
    assert "train/diversity" not in sc  # ensemble members see different batches (one stream each): no diversity
    common = ["--out", "distill.teacher=" + str(teacher), *TINY, "train.progress=false"]

    ok("train", "--config", "digits/end2", *common[:1], str(tmp_path / "end2"), *common[1:])
    sc = _check_run(tmp_path / "end2", {"distill/temperature", "train/alpha0", "train/log_alpha0"})
    total = len(sc["train/loss"])
    hold = decay = round(0.3333 * total)  # the recipe's EnD² schedule: hold_frac = decay_frac = 0.3333, T₀ = 10 → 1

    def temperature(u: int) -> float:
        return 10.0 if u <= hold else (1.0 if u >= hold + decay else 10.0 - 9.0 * (u - hold) / decay)

    assert [v for _, v in sc["distill/temperature"]] == pytest.approx([temperature(s - 1) for s, _ in sc["distill/temperature"]])
    # Jensen: mean ln α₀ ≤ ln mean α₀; α₀ = Σ exp(z) > 0
    for (_, a0), (_, la0) in zip(sc["train/alpha0"], sc["train/log_alpha0"]):
        assert a0 > 0 and la0 <= math.log(a0) + 1e-9

    ok("train", "--config", "digits/proxy_end2", *common[:1], str(tmp_path / "proxy"), *common[1:])
    sc = _check_run(tmp_path / "proxy", {"train/alpha0", "train/beta0"})
    assert all(v > 10 for _, v in sc["train/alpha0"])  # α = exp(z) + 1 over K = 10 classes: α₀ > 10
    assert all(v > 0 for _, v in sc["train/beta0"])

    ok("train", "--config", "digits/batchensemble", *common[:1], str(tmp_path / "be"), *common[1:], "method_args.members=2",
       "train.epochs=3", "train.val_every=2")
    sc = _check_run(tmp_path / "be", {"train/diversity", "distill/temperature"}, val_every=2)
    assert all(v > 0 for _, v in sc["train/diversity"])  # members with different fast weights disagree
    assert [v for _, v in sc["distill/temperature"]] == pytest.approx([2.5] * len(sc["train/loss"]))  # the recipe's T
