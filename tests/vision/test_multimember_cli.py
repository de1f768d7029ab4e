"""End-to-end ``endist-vision train|evaluate`` on digits for every multi-member method (issue #6).

One small 3-member teacher ensemble is trained once per module; every student runs a few dozen
optimiser steps.  Training/evaluation run in-process through ``endist_vision.cli.main`` (the
``endist-vision`` console script's entry point: same argv, same exit codes, same stderr).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from endist_vision.checkpoint import load_checkpoint, load_run_model
from endist_vision.cli import main
from endist_vision.models import create_model

COMMON = ["train.progress=false", "train.log_every=5", "data.ood=[digits_noise]"]


def _train(out: Path, recipe: str, *overrides: str) -> dict:
    rc = main(["train", "--config", recipe, "--out", str(out), *COMMON, *overrides])
    assert rc == 0
    return json.loads((out / "metrics.json").read_text())


def _evaluate(run: Path) -> dict:
    assert main(["evaluate", "--run", str(run)]) == 0
    return json.loads((run / "eval" / "eval.json").read_text())


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mm") / "ens"
    _train(out, "digits_ensemble", "method_args.members=3", "train.max_steps=40")
    return out


def test_hydra_two_phases_and_ensemble_evaluation(teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "hydra"
    res = _train(run, "digits_hydra", f"distill.teacher={teacher}", "train.max_steps=30", "method_args.phase1_frac=0.5")
    phases = [r["hydra/phase"] for r in res["history"]]
    assert phases[0] == 1.0 and phases[-1] == 2.0
    model, meta, cfg = load_run_model(run)
    assert cfg["method_args"]["members"] == 3 and meta["num_members"] == 3  # one head per teacher member
    x = torch.rand(16, 1, 8, 8)
    out = model(x)
    assert out.shape == (16, 3, 10)
    # phase 2 started from identical copies of the Hinton head and trained them apart on different teachers
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-4
    assert res["test"]["accuracy"] > 0.5
    ev = _evaluate(run)
    assert ev["kind"] == "ensemble"
    assert "knowledge_roc_auc" in ev["ood"]["digits_noise"]
    assert ev["test"]["mean_uncertainty"]["mutual_information"] > 0


def test_batchensemble_head_distillation_with_fast_weight_group(teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "be"
    res = _train(run, "digits_batchensemble", f"distill.teacher={teacher}", "train.max_steps=40",
                 "method_args.objective=head", "method_args.fast_lr_mult=2.0", "method_args.fast_weight_decay=1e-4")
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    slow, fast = ck["optimizer"]["param_groups"]
    assert fast["lr"] == pytest.approx(2.0 * slow["lr"]) and fast["weight_decay"] == 1e-4
    model, meta, _ = load_run_model(run)
    assert meta["num_members"] == 3 and model(torch.rand(4, 1, 8, 8)).shape == (4, 3, 10)
    assert res["test"]["accuracy"] > 0.3  # chance is 0.1; random ±1 fast weights learn slowly at first
    assert _evaluate(run)["kind"] == "ensemble"


def test_latentbe_tdiv_sdiv_merges_into_single_model(teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "latentbe"
    res = _train(run, "digits_latentbe_tdiv", f"distill.teacher={teacher}", "train.max_steps=20")
    ck = load_checkpoint(run / "checkpoints" / "final.pt")
    assert not any("fast_" in k for k in ck["model"])  # merged: plain digits_cnn parameters only
    plain = create_model("digits_cnn", 10, in_channels=1, width=16, hidden=64)
    assert {k: v.shape for k, v in ck["model"].items()} == {k: v.shape for k, v in plain.state_dict().items()}
    last = load_checkpoint(run / "checkpoints" / "last.pt")  # the BE student before merging
    assert any("fast_r" in k for k in last["model"])
    model, meta, _ = load_run_model(run)
    assert meta["num_members"] == 1 and model(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    assert res["test"]["accuracy"] > 0.5
    assert _evaluate(run)["kind"] == "categorical"


def test_aekd_weights_logged_and_within_cap(teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "aekd"
    res = _train(run, "digits_aekd", f"distill.teacher={teacher}", "train.max_steps=20",
                 "method_args.perturbation=confods", "method_args.perturbation_gamma=8.0")
    for rec in res["history"]:
        w = [rec[f"aekd/weight_{m}"] for m in range(3)]
        assert sum(w) == pytest.approx(1.0, abs=1e-5) and min(w) >= 0 and max(w) <= 0.6 + 1e-6
    assert res["test"]["accuracy"] > 0.3  # chance is 0.1


@pytest.mark.parametrize("recipe,bad,msg", [
    ("digits_latentbe", "method_args.perturbation=fgsm", "method_args.perturbation must be one of"),
    ("digits_aekd", "method_args.aekd_cap=0.2", "aekd_cap=0.2 is infeasible for 3 teacher members"),
    ("digits_hydra", "method_args.head_blocks=40", "head_blocks must be in"),
    ("digits_batchensemble", "method_args.objective=mean", "method_args.objective must be kd|head"),
])
def test_bad_method_args_are_rejected_before_training(teacher: Path, tmp_path: Path, capsys, recipe: str,
                                                       bad: str, msg: str) -> None:
    out = tmp_path / "run"
    rc = main(["train", "--config", recipe, "--out", str(out), f"distill.teacher={teacher}", "train.max_steps=2",
               "train.progress=false", bad])
    assert rc != 0
    assert msg in capsys.readouterr().err
    assert not (out / "checkpoints").exists()
