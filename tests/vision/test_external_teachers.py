"""Teachers trained elsewhere: ``distill.teacher`` entries ``{model, kwargs, weights}`` (torchvision / timm state
dicts, with and without DDP's ``module.`` prefix) used exactly like an endist ensemble run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
import yaml

from endist_vision.data import load_dataset
from endist_vision.teacher import load_teacher
from vision_helpers import FAST, ok, read_eval, run_cli

DIGITS = {"name": "digits", "val_size": 150}


def _torchvision_resnet18(in_channels: int, classes: int) -> torch.nn.Module:
    net = torchvision.models.resnet18(weights=None, num_classes=classes)
    net.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return net.eval()


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[torch.nn.Module]]:
    """A YAML file of three external teachers (torchvision ResNet-18 as {'state_dict': sd}; timm resnet10t as a
    plain sd and as {'model': sd} with a 'module.' prefix) and the source networks."""
    d = tmp_path_factory.mktemp("external")
    torch.manual_seed(0)
    tv = _torchvision_resnet18(1, 10)
    tm1 = timm.create_model("resnet10t", num_classes=10, in_chans=1).eval()
    tm2 = timm.create_model("resnet10t", num_classes=10, in_chans=1).eval()
    torch.save({"state_dict": tv.state_dict()}, d / "tv.pt")
    torch.save(tm1.state_dict(), d / "timm.pt")
    torch.save({"model": {f"module.{k}": v for k, v in tm2.state_dict().items()}}, d / "timm_ddp.pt")
    entries = [{"model": "resnet18", "kwargs": {"stem": "imagenet"}, "weights": "tv.pt"},
               {"model": "timm/resnet10t", "weights": "timm.pt"},
               {"model": "timm/resnet10t", "weights": "timm_ddp.pt"}]
    (d / "teachers.yaml").write_text(yaml.safe_dump(entries))
    return d / "teachers.yaml", [tv, tm1, tm2]


def test_external_teacher_outputs_equal_the_source_networks(teacher_files) -> None:
    path, nets = teacher_files
    data = load_dataset(DIGITS, with_ood=False)
    teacher = load_teacher({"teacher": str(path)}, data.num_classes, data.name, data)
    assert teacher.num_members == 3
    x, _ = data.test.get(np.arange(16), None, np.zeros(16, dtype=np.int64))
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    want = torch.stack([net((x - mean) / std) for net in nets], dim=1)
    torch.testing.assert_close(teacher(x), want, rtol=1e-5, atol=1e-5)


def test_external_ensemble_distils_and_evaluates(teacher_files, tmp_path: Path) -> None:
    path, _ = teacher_files
    run = tmp_path / "end"
    ok("train", "--config", "digits/end", "--out", run, *FAST, "train.max_steps=8", f"distill.teacher={path}",
       "model.kwargs={width: 8, hidden: 32}")
    ok("evaluate", "--run", run, "--no-plots", "--teacher", path, "--out", tmp_path / "ev")
    res = read_eval(tmp_path / "ev")
    assert set(res["vs_teacher"]) >= {"test"} and res["vs_teacher"]["test"]["mad_total"] >= 0


def test_mismatched_class_count_is_refused_naming_the_entry(tmp_path: Path) -> None:
    w = tmp_path / "five.pt"
    torch.save(timm.create_model("resnet10t", num_classes=5, in_chans=1).state_dict(), w)
    code, _, err = run_cli("train", "--config", "digits/end", "--out", tmp_path / "r", *FAST, "train.max_steps=2",
                           f"distill.teacher=[{{model: timm/resnet10t, weights: {w}}}]")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "distill.teacher[0] (timm/resnet10t" in err and "predict 5 classes" in err and "has 10" in err
    assert not (tmp_path / "r").exists()


def test_wrong_input_channels_refused(tmp_path: Path) -> None:
    w = tmp_path / "rgb.pt"
    torch.save(_torchvision_resnet18(3, 10).state_dict(), w)
    code, _, err = run_cli("train", "--config", "digits/end", "--out", tmp_path / "r", *FAST, "train.max_steps=2",
                           f"distill.teacher=[{{model: resnet18, kwargs: {{stem: imagenet}}, weights: {w}}}]")
    assert code == 2 and "distill.teacher[0] (resnet18" in err and "conv1.weight: file [64, 3, 7, 7] vs model [64, 1, 7, 7]" in err
