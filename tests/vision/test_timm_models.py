"""timm backbones (``model.name: timm/<name>``, random weights, never downloaded) through endist's methods."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch

from endist_vision.models import BatchEnsembleNet, HydraNet, create_model, raw_net
from vision_helpers import FAST, ok, read_eval, run_cli

TIMM = ["model.name=timm/resnet10t", "model.kwargs={width: null, hidden: null, drop_rate: 0.0}"]


def test_create_model_passes_classes_channels_and_kwargs_to_timm() -> None:
    m = create_model("timm/resnet10t", 7, in_channels=1, drop_rate=0.25)
    net = raw_net(m)
    assert type(net).__module__ == "timm.models.resnet"
    assert net.num_classes == 7 and net.conv1[0].in_channels == 1 and net.drop_rate == 0.25
    assert m(torch.rand(3, 1, 8, 8)).shape == (3, 7)
    with pytest.raises(ValueError, match="'no_such_net' is not a timm model"):
        create_model("timm/no_such_net", 7)
    with pytest.raises(ValueError, match="model.kwargs.in_chans=3 is not allowed .* set from the data set"):
        create_model("timm/resnet10t", 7, in_chans=3)


def test_hydra_split_of_a_timm_model_is_the_classifier_and_reproduces_the_model() -> None:
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", num_classes=5, in_chans=1).eval()
    hydra = HydraNet.from_network(net, head_blocks=1, num_heads=1).eval()
    x = torch.rand(4, 1, 16, 16)
    assert isinstance(hydra.heads[0][0], torch.nn.Linear)
    torch.testing.assert_close(hydra(x)[:, 0], net(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="splits only at its classifier.*head_blocks=1, got 3"):
        HydraNet.from_network(net, head_blocks=3)


def test_batchensemble_converts_resnet_and_refuses_unsupported_timm_layers() -> None:
    be = BatchEnsembleNet.from_plain(timm.create_model("resnet10t", num_classes=4, in_chans=1), 2, fast_init="ones")
    assert be(torch.rand(3, 1, 16, 16)).shape == (3, 2, 4)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=4, img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    with pytest.raises(ValueError, match=r"cannot convert layer .* of type (VisionTransformer|LayerNorm)") as e:
        BatchEnsembleNet.from_plain(vit, 2)
    assert "\n" not in str(e.value)


def test_timm_end2_train_evaluate(digits_teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "end2"
    ok("train", "--config", "digits/end2", "--out", run, *FAST, "train.max_steps=12", f"distill.teacher={digits_teacher}", *TIMM)
    ok("evaluate", "--run", run, "--no-plots")
    res = read_eval(run / "eval")
    assert res["kind"] == "dirichlet" and math.isfinite(res["test"]["nll"])
    assert res["ood"]["digits_noise"]["knowledge_roc_auc"] is not None


def test_timm_hydra_train_evaluate(digits_teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "hydra"
    ok("train", "--config", "digits/hydra", "--out", run, *FAST, "train.max_steps=12", f"distill.teacher={digits_teacher}",
       *TIMM, "method_args.head_blocks=1", "method_args.phase1_frac=0.5")
    ok("evaluate", "--run", run, "--no-plots")
    res = read_eval(run / "eval")
    assert res["kind"] == "ensemble" and res["num_members"] == 4  # one head per teacher member
    assert math.isfinite(res["test"]["nll"])


def test_timm_hydra_other_split_refused(digits_teacher: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--config", "digits/hydra", "--out", tmp_path / "h", *FAST, "train.max_steps=2",
                           f"distill.teacher={digits_teacher}", *TIMM, "method_args.head_blocks=2")
    assert code == 2 and "head_blocks=1, got 2" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_pretrained_refused_and_missing_weights_named(tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--config", "digits/individual", "--out", tmp_path / "a", *FAST, "train.max_steps=2",
                           "model.name=timm/resnet10t", "model.kwargs={width: null, hidden: null, pretrained: true}")
    assert code == 2 and "model.kwargs.pretrained=True is not allowed" in err and "never downloads" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    missing = tmp_path / "nope.pt"
    code, _, err = run_cli("train", "--config", "digits/individual", "--out", tmp_path / "b", *FAST, "train.max_steps=2",
                           "model.name=timm/resnet10t", f"model.kwargs={{width: null, hidden: null, weights: {missing}}}")
    assert code == 2 and f"weights file {missing} does not exist" in err and len(err.strip().splitlines()) == 1


def test_local_weights_are_loaded_and_not_needed_for_evaluation(tmp_path: Path) -> None:
    torch.manual_seed(3)
    src = timm.create_model("resnet10t", num_classes=10, in_chans=1)
    w = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, w)
    m = create_model("timm/resnet10t", 10, in_channels=1, weights=str(w))
    for k, v in src.state_dict().items():
        assert torch.equal(raw_net(m).state_dict()[k], v), k
