"""Distil the toy teachers with each of the four criterions through the real ``fairseq-train``.

To make "the loss goes down" a clean statement, the parametrised test trains on
one fixed batch (the 200 ``valid`` sentences, ``--batch-size 200``) at T = 1: the
loss logged at update 1 is the untrained student's loss on exactly the data the
last update sees, and validation (end of training, no dropout) is on that data too.
"""

import math

import pytest

from seq_helpers import STUDENT_UPDATES, TrainLog, check, distill_cmd, load_checkpoint_state, run

CRITERIONS = [
    "forward_kl_mean_distillation",
    "sequence_distribution_distillation",
    "dirichlet_proxy_distillation",
    "rkl_dirichlet_proxy_distillation",
]
UPDATES = 30
LOGGED = ("loss", "nll_loss", "teacher_nll", "alpha0", "beta0", "temperature")
FIXED_BATCH = [
    "--train-subset", "valid", "--batch-size", "200", "--required-batch-size-multiple", "1",
    "--warmup-updates", "10", "--validate-interval", "10000", "--save-interval", "10000",
]


def _check_logged(log: TrainLog) -> None:
    assert log.train_inner and log.valid
    for rec in log.train_inner + log.valid:
        for key in LOGGED:
            assert key in rec and math.isfinite(rec[key]), (key, rec)
        assert rec["alpha0"] > 0 and rec["beta0"] > 0 and rec["teacher_nll"] > 0


@pytest.mark.parametrize("criterion", CRITERIONS)
def test_distillation_criterion_learns(tmp_path, toy_data_bin, teacher_checkpoints, criterion):
    extra = list(FIXED_BATCH)
    if criterion == "forward_kl_mean_distillation":
        extra += ["--xent-weight", "0.5", "--label-smoothing", "0.1"]  # EnD + reference cross-entropy
    if criterion == "dirichlet_proxy_distillation":
        extra += ["--target-concentration", "epkl"]
    proc = check(run(distill_cmd(toy_data_bin, tmp_path, teacher_checkpoints, criterion, extra, max_update=UPDATES)))
    log = TrainLog.parse(proc.stdout + proc.stderr)
    _check_logged(log)
    inner = log.train_inner
    assert [int(r["num_updates"]) for r in inner] == list(range(1, UPDATES + 1))
    assert all(r["bsz"] == 200 and r["temperature"] == 1.0 for r in inner)
    # the loss goes down (same batch every update)
    first, last = inner[0]["loss"], inner[-1]["loss"]
    assert last < first - 0.25 * abs(first), (first, last)
    # the student's reference NLL ends well below the untrained student's (bits/token)
    untrained_nll, final_nll = inner[0]["nll_loss"], log.valid[-1]["nll_loss"]
    assert final_nll < untrained_nll - 1.0, (untrained_nll, final_nll)
    # and the teachers, trained for longer, are better than that
    assert log.valid[-1]["teacher_nll"] < final_nll


def test_rkl_proxy_student_with_annealing(student_checkpoint, teacher_checkpoints):
    """The session's shared Proxy-EnD² student (full training set, temperature 2 → 1)."""
    log = TrainLog.parse((student_checkpoint.parent / "train.log").read_text())
    _check_logged(log)
    inner = log.train_inner
    assert [int(r["num_updates"]) for r in inner] == list(range(1, STUDENT_UPDATES + 1))
    assert inner[0]["temperature"] == pytest.approx(2.0) and inner[-1]["temperature"] == pytest.approx(1.0)
    assert all(r["temperature"] == 1.0 for r in log.valid)  # validation always at T = 1
    assert log.valid[-1]["nll_loss"] < 0.5 * inner[0]["nll_loss"]

    student = load_checkpoint_state(student_checkpoint)
    teacher = load_checkpoint_state(teacher_checkpoints[0])
    # same architecture: the student's state dict has exactly the teacher's keys and shapes,
    # so no teacher weights were saved into it
    assert student["model"].keys() == teacher["model"].keys()
    assert all(student["model"][k].shape == v.shape for k, v in teacher["model"].items())
    assert student["cfg"]["criterion"]["_name"] == "rkl_dirichlet_proxy_distillation"
    assert student["cfg"]["criterion"]["model_offset"] == 1.0
