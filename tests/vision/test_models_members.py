"""Per-member views of multi-member networks (issue 12.3): ``BatchEnsembleNet.member(m)`` is member m as a
plain network, ``ModuleEnsemble.stacked()`` the vectorised evaluation twin of a batch-norm ensemble, and
``scripts/lib/inference_runtime.py`` times those (batched = the vectorised pass, M passes = the members)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from endist_vision.models import BatchEnsembleNet, ModuleEnsemble, StackedEnsemble, build_ensemble, create_model
from endist_vision.models.layers import be_layers

ROOT = Path(__file__).resolve().parents[2]


def _runtime():
    spec = importlib.util.spec_from_file_location("inference_runtime", ROOT / "scripts" / "lib" / "inference_runtime.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _trained_looking(be: BatchEnsembleNet) -> BatchEnsembleNet:
    with torch.no_grad():
        for layer in be_layers(be):
            for p in (layer.fast_r, layer.fast_s, layer.member_bias):
                if p is not None:
                    p.add_(0.3 * torch.randn_like(p))
        for mod in be.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return be.eval()


def _bn_ensemble(m: int) -> ModuleEnsemble:
    members = []
    for seed in range(m):
        torch.manual_seed(seed)
        net = create_model("resnet20", 5, in_channels=1, mean=[0.5], std=[0.25]).double().eval()
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
        members.append(net)
    return ModuleEnsemble(members).eval()


def test_batchensemble_member_is_member_m_as_a_plain_network() -> None:
    torch.manual_seed(0)
    be = _trained_looking(BatchEnsembleNet.from_plain(create_model("resnet20", 5, in_channels=1).net.double(), 3))
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        full = be(x)
        for m in range(3):
            plain = be.member(m)
            assert not list(be_layers(plain)) and not plain.training
            torch.testing.assert_close(plain(x), full[:, m], rtol=1e-10, atol=1e-10)
    with pytest.raises(IndexError):
        be.member(3)


def test_stacked_module_ensemble_matches_the_loop_and_refuses_training() -> None:
    ens = _bn_ensemble(3)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    stacked = ens.stacked()
    assert isinstance(stacked, StackedEnsemble)
    with torch.no_grad():
        torch.testing.assert_close(stacked(x), ens(x), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(stacked.subset(2)(x), ens(x)[:, :2], rtol=1e-10, atol=1e-10)
    with pytest.raises(RuntimeError, match="inference_only"):
        stacked.train()
    with pytest.raises(ValueError, match="batch norm"):
        StackedEnsemble(list(ens.members))


def test_runtime_times_the_vectorised_pass_and_the_members() -> None:
    rt = _runtime()
    ens = _bn_ensemble(2)
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    batched = rt.batched_network(ens)
    assert isinstance(batched, StackedEnsemble)  # not the members' loop that "M passes" times
    parts = rt.member_networks(ens)
    with torch.no_grad():
        ref = ens(x)
        torch.testing.assert_close(batched(x), ref, rtol=1e-10, atol=1e-10)
        for m, part in enumerate(parts):
            torch.testing.assert_close(part(x), ref[:, m], rtol=1e-10, atol=1e-10)
    torch.manual_seed(0)
    stacked = build_ensemble(lambda i: create_model("mlp", 4, mean=[0.5], std=[0.25], in_features=6, hidden=8, depth=1), 3)
    assert isinstance(stacked, StackedEnsemble) and rt.batched_network(stacked) is stacked
    parts = rt.member_networks(stacked)
    xs = torch.rand(5, 6)
    with torch.no_grad():
        assert len(parts) == 3
        for m, part in enumerate(parts):
            torch.testing.assert_close(part(xs), stacked(xs)[:, m])
