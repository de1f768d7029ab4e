"""Stopping and resuming from ``checkpoint_last.pt`` continues the schedule where it left off."""

import math
import re

from seq_helpers import TrainLog, check, distill_cmd, run
from shared.schedules import TemperatureAnnealing

STOP, TOTAL = 8, 16
LR, WARMUP = 5e-3, 20  # as in distill_cmd
SCHEDULE = ["--init-temp", "4", "--final-temp", "1", "--anneal-start", "4", "--anneal-end", "12"]


def _inverse_sqrt_lr(update: int) -> float:
    """fairseq's inverse_sqrt scheduler (warmup from 0 by default on a fresh run)."""
    if update < WARMUP:
        return update * LR / WARMUP
    return LR * math.sqrt(WARMUP) / math.sqrt(update)


def test_resume_continues_temperature_lr_and_updates(tmp_path, toy_data_bin, teacher_checkpoints):
    extra = [*SCHEDULE, "--batch-size", "32", "--disable-validation"]
    first = check(run(distill_cmd(toy_data_bin, tmp_path, teacher_checkpoints, extra=extra, max_update=STOP)))
    assert (tmp_path / "checkpoint_last.pt").is_file()
    second = check(run(distill_cmd(toy_data_bin, tmp_path, teacher_checkpoints, extra=extra, max_update=TOTAL)))
    out2 = second.stdout + second.stderr
    assert re.search(rf"Loaded checkpoint \S+checkpoint_last\.pt \(epoch \d+ @ {STOP} updates\)", out2), out2[-3000:]

    log1 = TrainLog.parse(first.stdout + first.stderr).train_inner
    log2 = TrainLog.parse(out2).train_inner
    assert [r["num_updates"] for r in log1] == list(range(1, STOP + 1))
    assert [r["num_updates"] for r in log2] == list(range(STOP + 1, TOTAL + 1))

    schedule = TemperatureAnnealing(4.0, 1.0, hold_steps=4, decay_steps=8)
    for rec in log1 + log2:
        u = int(rec["num_updates"])
        # the batch of update u is processed after u - 1 completed updates
        assert math.isclose(rec["temperature"], schedule(u - 1), abs_tol=1e-3), (u, rec["temperature"])
        assert math.isclose(rec["lr"], _inverse_sqrt_lr(u), rel_tol=1e-4), (u, rec["lr"])
    # the resumed run is mid-decay, not restarted at the initial temperature or warmup lr
    assert 1.0 < log2[0]["temperature"] < 4.0
    assert log2[0]["lr"] > 0.3 * LR
