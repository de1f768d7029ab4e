"""Exact resume after a hard kill, and gradient equivalence of 2-process gloo DDP and ``accumulate=2``
with single-process large-batch training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from vision_helpers import FAST, bin_path, ok

from fault_injection import fault_env

# dropout + augmentation + one-cycle Adam + EnD² temperature schedule: every piece of state matters
RESUME_ARGS = [*FAST, "train.max_steps=14", "train.ckpt_every=4", "data.augment=shift",
               "model.kwargs={width: 4, hidden: 16, dropout: 0.3}", "method_args.initial_temperature=3.0"]


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "final.pt", weights_only=True)["model"]


def test_exact_resume_after_kill(digits_teacher: Path, tmp_path: Path) -> None:
    args = ["--config", "digits/end2", *RESUME_ARGS, f"distill.teacher={digits_teacher}"]
    ok("train", "--out", tmp_path / "full", *args)
    # killed (os._exit by a test hook, no cleanup) after step 10: the last checkpoint is from step 8; steps 9-10 are lost
    env = fault_env(kill_after=10)
    p = subprocess.run([bin_path("endist-vision"), "train", "--out", str(tmp_path / "killed"), *args], env=env, capture_output=True, text=True)
    assert p.returncode == 137, p.stderr
    assert not (tmp_path / "killed" / "checkpoints" / "final.pt").exists()
    assert torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)["step"] == 8
    ok("train", "--out", tmp_path / "killed", "--resume", "train.progress=false")
    a, b = _state(tmp_path / "full"), _state(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    hist_a = __import__("json").loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    hist_b = __import__("json").loads((tmp_path / "killed" / "metrics.json").read_text())["history"]
    assert [h["loss"] for h in hist_a] == [h["loss"] for h in hist_b]


def test_resume_refuses_config_changes(digits_teacher: Path, tmp_path: Path) -> None:
    from vision_helpers import run_cli

    ok("train", "--out", tmp_path / "r", "--config", "digits/individual", *FAST, "train.max_steps=4", "model.kwargs={width: 4, hidden: 8}")
    code, _, err = run_cli("train", "--out", tmp_path / "r", "--resume", "train.lr=0.5")
    assert code != 0 and "train.lr" in err


DDP_ARGS = ["--config", "digits/end", *FAST, "train.max_steps=3", "train.batch_size=32", "train.optimizer=sgd", "train.lr=0.05",
            "train.schedule=constant", "train.momentum=0.9", "model.kwargs={width: 4, hidden: 16}", "data.augment=none"]


def test_ddp_and_accumulation_match_large_batch(digits_teacher: Path, tmp_path: Path) -> None:
    """After 3 SGD steps (global batch 32) the parameters of 1 process, 1 process with accumulate=2 and
    2 gloo processes (16 each) agree to float rounding: their gradients are the same mean over 32."""
    args = [*DDP_ARGS, f"distill.teacher={digits_teacher}"]
    ok("train", "--out", tmp_path / "single", *args)
    ok("train", "--out", tmp_path / "accum", *args, "train.accumulate=2")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run([bin_path("torchrun"), "--standalone", "--nproc_per_node=2", bin_path("endist-vision"), "train",
                        "--out", str(tmp_path / "ddp"), *args], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    s, a, d = _state(tmp_path / "single"), _state(tmp_path / "accum"), _state(tmp_path / "ddp")
    init = None
    for k in s:
        torch.testing.assert_close(a[k], s[k], rtol=0, atol=2e-6)
        torch.testing.assert_close(d[k], s[k], rtol=0, atol=2e-6)
    # and training did move the weights (the comparison is not vacuous)
    torch.manual_seed(0)
    from endist_vision.models import create_model

    init = create_model("digits_cnn", 10, in_channels=1, width=4, hidden=16).state_dict()
    assert not torch.allclose(init["net.0.weight"], s["net.0.weight"])


def test_dataloader_workers_do_not_change_the_run(tmp_path: Path) -> None:
    """Batches are seeded by step and workers draw their seed from a private generator, so
    ``train.num_workers=2`` reproduces the single-process run exactly (dropout + augmentation on)."""
    args = ["--config", "digits/individual", *FAST, "train.max_steps=6", "data.augment=shift", "model.kwargs={width: 4, hidden: 8, dropout: 0.2}"]
    ok("train", "--out", tmp_path / "w0", *args)
    ok("train", "--out", tmp_path / "w2", *args, "train.num_workers=2")
    a, b = _state(tmp_path / "w0"), _state(tmp_path / "w2")
    assert all(torch.equal(a[k], b[k]) for k in a)
