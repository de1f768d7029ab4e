"""Gradient accumulation and 2-process CPU DDP give the same training as one big batch.

All runs start from the same weights (teacher 1, via ``--restore-file`` with all
state resets), use plain SGD (so each update is ``-lr · gradient``), no dropout,
and train on the 200-sentence ``valid`` subset so that one update sees the whole
subset in every configuration:

* reference: ``--batch-size 200`` (1 batch per update), 1 process;
* ``--batch-size 100 --update-freq 2`` (2 accumulated batches), 1 process;
* ``--batch-size 100`` on 2 gloo processes (one batch each; fairseq's legacy DDP
  all-reduces the gradients), started explicitly with ``--distributed-rank``.

The batches of 100 are padded differently from the batch of 200, so agreement
also shows that padding contributes nothing.
"""

import re
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from seq_helpers import MODEL_ARGS, TrainLog, check, free_port, model_params, run, seq_env, tool, REPO

K_UPDATES = 2


def _cmd(data: Path, teachers: List[Path], save_dir: Path, extra: List[str]) -> List[str]:
    return [
        tool("fairseq-train"), str(data), "--user-dir", "endist_seq", "--task", "ensemble_distillation",
        "--ensemble-paths", ",".join(map(str, teachers)), "--criterion", "rkl_dirichlet_proxy_distillation",
        "--cpu", "--num-workers", "0", "--seed", "3", *MODEL_ARGS,
        "--dropout", "0", "--attention-dropout", "0", "--activation-dropout", "0",
        "--optimizer", "sgd", "--lr", "0.5", "--clip-norm", "0",
        "--train-subset", "valid", "--valid-subset", "valid", "--disable-validation",
        "--required-batch-size-multiple", "1", "--max-update", str(K_UPDATES),
        "--restore-file", str(teachers[0]),
        "--reset-optimizer", "--reset-lr-scheduler", "--reset-meters", "--reset-dataloader",
        "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "1",
        "--data-buffer-size", "0",
        *extra,
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, toy_data_bin, teacher_checkpoints) -> Dict[str, torch.Tensor]:
    save = tmp_path_factory.mktemp("ref")
    proc = check(run(_cmd(toy_data_bin, teacher_checkpoints, save, ["--batch-size", "200"])))
    log = TrainLog.parse(proc.stdout + proc.stderr)
    assert [r["num_updates"] for r in log.train_inner] == list(range(1, K_UPDATES + 1))
    assert all(r["bsz"] == 200 for r in log.train_inner)
    return model_params(save / "checkpoint_last.pt")


def _assert_same_training(params: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor], init: Dict[str, torch.Tensor]) -> None:
    assert params.keys() == ref.keys()
    delta_ref = torch.cat([(ref[k] - init[k]).flatten() for k in ref])
    diff = torch.cat([(params[k] - ref[k]).flatten() for k in ref])
    # the updates are real (not a no-op that would trivially agree) ...
    assert delta_ref.abs().max() > 1e-3, "reference training did not move the weights"
    # ... and agree to float32 rounding: |diff| is ~1e-7, the updates ~1e-2
    assert diff.abs().max() <= 1e-5 * delta_ref.abs().max() + 1e-6, (diff.abs().max(), delta_ref.abs().max())
    assert diff.norm() <= 1e-4 * delta_ref.norm()


def test_update_freq_2_equals_double_batch(tmp_path, toy_data_bin, teacher_checkpoints, reference):
    proc = check(run(_cmd(toy_data_bin, teacher_checkpoints, tmp_path, ["--batch-size", "100", "--update-freq", "2"])))
    log = TrainLog.parse(proc.stdout + proc.stderr)
    assert [r["num_updates"] for r in log.train_inner] == list(range(1, K_UPDATES + 1))
    assert all(r["bsz"] == 200 for r in log.train_inner)  # two batches of 100 per update
    init = model_params(teacher_checkpoints[0])
    _assert_same_training(model_params(tmp_path / "checkpoint_last.pt"), reference, init)


def test_two_process_gloo_ddp_equals_single_process(tmp_path, toy_data_bin, teacher_checkpoints, reference):
    port = free_port()
    procs = []
    for rank in range(2):
        extra = [
            "--batch-size", "100",
            "--distributed-world-size", "2", "--distributed-rank", str(rank),
            "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
            "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp", "--device-id", "0",
        ]
        procs.append(
            subprocess.Popen(
                _cmd(toy_data_bin, teacher_checkpoints, tmp_path, extra), cwd=REPO, env=seq_env(),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
        )
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        outputs.append(out)
        assert proc.returncode == 0, out[-6000:]
    for rank, out in enumerate(outputs):
        # really two processes in one group, not two independent world-size-1 runs
        assert re.search(rf"distributed init \(rank {rank}\): tcp://127\.0\.0\.1:{port}", out), out[-3000:]
    assert "training on 2 devices" in outputs[0]
    log0 = TrainLog.parse(outputs[0])
    assert [r["num_updates"] for r in log0.train_inner] == list(range(1, K_UPDATES + 1))
    assert all(r["bsz"] == 200 for r in log0.train_inner)  # aggregated over both ranks
    init = model_params(teacher_checkpoints[0])
    _assert_same_training(model_params(tmp_path / "checkpoint_last.pt"), reference, init)
