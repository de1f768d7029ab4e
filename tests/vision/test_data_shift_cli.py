"""End to end on the stand-ins: ``endist-vision train`` on the lazily decoded ImageNet layout, ``evaluate
--shift`` (ImageNet-A/C, CIFAR-10-C; single model and ensemble) with the metrics in eval.json / eval.md /
``compare``, dataset errors (exit 3), and bit-exact resume with lazily decoded, RandomResizedCrop-augmented
inputs and DataLoader workers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from data_helpers import standins
from vision_helpers import FAST, bin_path, ok, read_eval, run_cli

from fault_injection import fault_env


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("standins_cli")
    standins.write_standins(out, ["imagenet", "imagenet-a", "imagenet-c", "imagenet-o", "cifar10", "cifar10-c"], per_class=4)
    return out


def _inet(sd: Path, size: int = 16) -> list[str]:
    return ["data.name=imagenet", f"data.root={sd / 'imagenet'}", f"data.image_size={size}", "data.val_size=8", "data.augment=imagenet"]


def test_imagenet_train_and_evaluate_shift(sd: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    a_spec = f"A=imagenet_a:{sd / 'imagenet-a'}"
    ok("train", "--out", run, *FAST, *_inet(sd), "model.name=resnet20", "train.max_steps=2", "train.batch_size=8",
       f"data.shift=[{a_spec}]")  # data.shift: the default of evaluate
    ok("evaluate", "--run", run, "--out", tmp_path / "ev0", "--ood", f"imagenet_o={sd / 'imagenet-o'}")
    r0 = read_eval(tmp_path / "ev0")
    assert list(r0["shift"]) == ["A"] and r0["shift"]["A"]["classes"] == 6 and r0["shift"]["A"]["dataset"] == "imagenet_a"
    assert r0["shift"]["A"]["n"] == sum(len(os.listdir(sd / "imagenet-a" / w)) for w in os.listdir(sd / "imagenet-a"))
    assert "imagenet_o" in r0["ood"]

    ok("evaluate", "--run", run, "--out", tmp_path / "evw", "--shift", a_spec, "--workers", "2")
    assert read_eval(tmp_path / "evw")["shift"] == r0["shift"]  # decoding workers and the --shift flag change nothing
    ok("evaluate", "--run", run, "--out", tmp_path / "ev", "--shift", a_spec, "--shift", f"C=imagenet_c:{sd / 'imagenet-c'}",
       "--shift-max-per-set", "5")
    r = read_eval(tmp_path / "ev")
    assert r["shift"]["A"]["n"] == 5
    c = r["shift"]["C"]
    assert c["n"] == 2 * 5 * 5 and len(c["subsets"]) == 10 and sorted(c["per_severity"]) == ["1", "2", "3", "4", "5"]
    assert sorted(c["per_corruption"]) == ["contrast", "gaussian_noise"]
    for key in ("accuracy", "nll", "ece", "brier", "calibrated_nll", "calibrated_ece"):
        vals = [v[key] for v in c["subsets"].values()]
        assert c["mean"][key] == pytest.approx(sum(vals) / len(vals))
    md = (tmp_path / "ev" / "eval.md").read_text()
    assert "| C (mean) | 50 |" in md and "| C s5 |" in md and "| A |" in md
    out = ok("compare", f"one={tmp_path / 'ev'}", f"zero={tmp_path / 'ev0'}")
    row = next(line for line in out.splitlines() if line.startswith("| C ECE |"))
    assert row.split("|")[2].strip() == f"{100 * c['mean']['ece']:.2f}" and row.split("|")[3].strip() == "–"

    before = (tmp_path / "ev" / "eval.json").read_bytes()
    code, _, err = run_cli("evaluate", "--run", run, "--out", tmp_path / "ev", "--shift", f"C=imagenet_c:{tmp_path / 'nowhere'}")
    assert code == 3 and "--shift[0]" in err and str(tmp_path / "nowhere") in err
    code, _, err = run_cli("evaluate", "--run", run, "--out", tmp_path / "ev", "--shift", f"C10=cifar10_c:{sd / 'cifar-10-c'}")
    assert code == 3 and "shape" in err
    assert (tmp_path / "ev" / "eval.json").read_bytes() == before


def test_ensemble_on_cifar10_c(sd: Path, tmp_path: Path) -> None:
    run = tmp_path / "ens"
    ok("train", "--out", run, *FAST, "method=ensemble", "method_args.members=2", "data.name=cifar10", f"data.root={sd / 'cifar-10-batches-py'}",
       "data.val_size=8", "model.name=resnet20", "train.max_steps=2", "train.batch_size=8")
    ok("evaluate", "--run", run, "--shift", f"C10=cifar10_c:{sd / 'cifar-10-c'}")
    r = read_eval(run / "eval")
    assert r["kind"] == "ensemble" and r["num_members"] == 2
    s = r["shift"]["C10"]
    assert s["n"] == 2 * 5 * 40 and s["classes"] == 10
    assert all(0.0 <= v["accuracy"] <= 1.0 and v["nll"] > 0 for v in s["per_severity"].values())


def _final(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "final.pt", weights_only=True)["model"]


def test_exact_resume_with_lazy_imagenet(sd: Path, tmp_path: Path) -> None:
    """Killed after step 5 (last checkpoint: step 4) and resumed with 2 DataLoader workers: the same
    weights and losses as an uninterrupted run without workers (dropout + RandomResizedCrop/flip)."""
    args = [*FAST, *_inet(sd, 12), "model.name=mlp", "model.kwargs={in_features: 432, hidden: 16, depth: 2, dropout: 0.3}",
            "train.max_steps=8", "train.ckpt_every=2", "train.batch_size=8", "train.log_every=1"]
    ok("train", "--out", tmp_path / "full", *args)
    env = fault_env(kill_after=5)
    p = subprocess.run([bin_path("endist-vision"), "train", "--out", str(tmp_path / "killed"), *args, "train.num_workers=2"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 137, p.stderr[-2000:]
    assert torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    ok("train", "--out", tmp_path / "killed", "--resume", "train.progress=false")
    a, b = _final(tmp_path / "full"), _final(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [h["loss"] for h in json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]]
    lb = [h["loss"] for h in json.loads((tmp_path / "killed" / "metrics.json").read_text())["history"]]
    assert la == lb and len(la) == 8
