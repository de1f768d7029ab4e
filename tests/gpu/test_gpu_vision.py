"""``endist-vision train`` with AMP (fp16 with a GradScaler, bf16 without) on CUDA for every digits
distillation method, and ``endist-vision evaluate --device cuda`` (vs ``--device cpu`` on the same run)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch

from endist_vision.cli import main
from gpu_helpers import non_finite, numbers

FAST = ["train.progress=false", "train.log_every=5", "train.device=cuda"]


def run_cli(*args) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def ok(*args) -> Tuple[str, str]:
    code, out, err = run_cli(*args)
    assert code == 0, f"endist-vision {' '.join(map(str, args))} failed ({code}):\n{err[-4000:]}\n{out[-2000:]}"
    assert "ignored on" not in err, err  # AMP must not be switched off
    return out, err


def _check_run(run: Path, amp: str) -> Dict:
    metrics = json.loads((run / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["history"]]
    assert losses and all(math.isfinite(v) for v in losses), losses
    assert non_finite(metrics) == {}, non_finite(metrics)
    last = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    scaler = last["scaler"]
    if amp == "fp16":  # GradScaler enabled: a finite positive loss scale was saved
        assert 0 < scaler["scale"] < math.inf, scaler
    else:  # bf16: no loss scaling
        assert scaler == {}, scaler
    for name, p in last["model"].items():  # master weights stay float32 under autocast
        if p.is_floating_point():
            assert p.dtype == torch.float32 and torch.isfinite(p).all(), name
    return metrics


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-member (vmap'd) digits CNN ensemble trained on CUDA with bf16 autocast, 80 steps."""
    d = tmp_path_factory.mktemp("gpu_digits") / "ensemble"
    ok("train", "--config", "digits_ensemble", "--out", d, *FAST, "train.amp=bf16", "method_args.members=4",
       "train.max_steps=80", "data.augment=none", "model.kwargs={width: 8, hidden: 32}")
    metrics = _check_run(d, "bf16")
    assert metrics["val"]["accuracy"] > 0.5, metrics["val"]  # 10 classes: chance is 0.1
    return d


CASES = [
    ("digits_proxy_end2", "fp16"), ("digits_proxy_end2", "bf16"),
    ("digits_end2", "fp16"), ("digits_end2", "bf16"),
    ("digits_end", "fp16"), ("digits_aekd", "bf16"),
    ("digits_hydra", "fp16"), ("digits_batchensemble", "bf16"),
    ("digits_latentbe", "fp16"), ("digits_latentbe_tdiv", "bf16"),
]


@pytest.mark.parametrize("recipe,amp", CASES, ids=[f"{r[7:]}-{a}" for r, a in CASES])
def test_train_with_amp_and_evaluate_on_cuda(recipe: str, amp: str, teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok("train", "--config", recipe, "--out", run, *FAST, f"train.amp={amp}", f"distill.teacher={teacher}",
       "train.max_steps=30", "model.kwargs={width: 8, hidden: 32}")
    _check_run(run, amp)
    ok("evaluate", "--run", run, "--device", "cuda", "--out", tmp_path / "eval_cuda")
    res = json.loads((tmp_path / "eval_cuda" / "eval.json").read_text())
    assert non_finite(res) == {}, non_finite(res)
    assert 0.0 <= res["test"]["accuracy"] <= 1.0 and set(res["ood"]) == {"digits_inverted", "digits_rotated", "digits_noise"}


def test_evaluate_cuda_equals_cpu(teacher: Path, tmp_path: Path) -> None:
    """The same Proxy-EnD² run evaluated on CUDA and on CPU: every reported number agrees (fp32 inference;
    TF32 convolutions on CUDA allow tiny differences)."""
    run = tmp_path / "run"
    ok("train", "--config", "digits_proxy_end2", "--out", run, *FAST, "train.amp=fp16", f"distill.teacher={teacher}",
       "train.max_steps=30", "model.kwargs={width: 8, hidden: 32}")
    ok("evaluate", "--run", run, "--device", "cuda", "--out", tmp_path / "cuda")
    ok("evaluate", "--run", run, "--device", "cpu", "--out", tmp_path / "cpu")
    gpu = dict(numbers(json.loads((tmp_path / "cuda" / "eval.json").read_text())))
    cpu = dict(numbers(json.loads((tmp_path / "cpu" / "eval.json").read_text())))
    assert gpu.keys() == cpu.keys() and len(gpu) > 10
    bad = {k: (gpu[k], cpu[k]) for k in gpu if not math.isclose(gpu[k], cpu[k], rel_tol=1e-2, abs_tol=1e-2)}
    assert bad == {}, bad
