"""A teacher trained elsewhere: plain ``fairseq-train --task translation`` (no ``--user-dir endist_seq``, none of
endist's scripts) on the same dictionaries is a valid ``--ensemble-paths`` member."""

import math
from pathlib import Path
from typing import List

import torch

from endist_seq.safe_globals import register_fairseq_safe_globals
from seq_helpers import MODEL_ARGS, TrainLog, check, distill_cmd, run, tool


def test_plain_fairseq_checkpoint_is_a_teacher(toy_data_bin: Path, teacher_checkpoints: List[Path], tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    # one whole epoch (47 updates, < 1 s): plain fairseq-train stopped by --max-update in mid-epoch aborts at exit
    # now and then on this CPU build ("terminate called without an active exception", rc -6) after saving
    check(run([
        tool("fairseq-train"), toy_data_bin, "--task", "translation", *MODEL_ARGS, "--criterion", "cross_entropy",
        "--optimizer", "adam", "--lr", "5e-3", "--batch-size", "64", "--max-epoch", "1", "--seed", "7", "--cpu",
        "--num-workers", "0", "--disable-validation", "--no-epoch-checkpoints", "--save-dir", plain,
    ]))
    ckpt = plain / "checkpoint_last.pt"
    register_fairseq_safe_globals()  # fairseq 0.12 pickles an argparse.Namespace; still weights-only
    cfg = torch.load(ckpt, map_location="cpu", weights_only=True)["cfg"]
    assert cfg["common"]["user_dir"] is None and cfg["task"]["_name"] == "translation"  # plain fairseq, no endist

    student = tmp_path / "student"
    proc = check(run(distill_cmd(toy_data_bin, student, [ckpt, teacher_checkpoints[0]],
                                 "rkl_dirichlet_proxy_distillation", max_update=3)))
    log = TrainLog.parse(proc.stdout + proc.stderr)
    assert len(log.train_inner) == 3
    for rec in log.train_inner:
        assert math.isfinite(rec["loss"]) and math.isfinite(rec["teacher_nll"])
    assert (student / "checkpoint_last.pt").is_file()
