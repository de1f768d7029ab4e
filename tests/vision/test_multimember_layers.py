"""BatchEnsemble layers/layout, LatentBE merge and Hydra structure (issue #6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from endist_vision.models import BatchEnsembleNet, create_model
from endist_vision.models.wrn import WideResNet
from endist_vision.models.layers.batchensemble import (
    BatchEnsembleConv2d,
    BatchEnsembleLinear,
    be_layers,
    members_to_batch_major,
    repeat_members,
    split_fast_parameters,
)
from endist_vision.models.wrappers.hydra import HydraNet, block_list
from endist_vision.models.wrappers.latentbe import latentbe_student, merge_to_single, recalibrate_batchnorm


def _randomise_fast(model: nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for layer in be_layers(model):
            layer.fast_r.add_(scale * torch.randn_like(layer.fast_r))
            layer.fast_s.add_(scale * torch.randn_like(layer.fast_s))
            if layer.member_bias is not None:
                layer.member_bias.add_(scale * torch.randn_like(layer.member_bias))


def test_layout_helpers_are_member_major() -> None:
    x = torch.arange(6.0).reshape(3, 2)  # B = 3
    rep = repeat_members(x, 4)
    assert rep.shape == (12, 2)
    for m in range(4):
        assert torch.equal(rep[m * 3:(m + 1) * 3], x)
    y = torch.arange(12 * 5.0).reshape(12, 5)  # [M·B, K]
    out = members_to_batch_major(y, 4)
    assert out.shape == (3, 4, 5)
    for b in range(3):
        for m in range(4):
            assert torch.equal(out[b, m], y[m * 3 + b])
    with pytest.raises(ValueError, match="ensemble_size=4"):
        members_to_batch_major(torch.zeros(10, 5), 4)


def test_linear_member_equals_explicit_rank_one_weight() -> None:
    layer = BatchEnsembleLinear(5, 3, ensemble_size=4).double()
    _randomise_fast(layer)
    x = torch.randn(7, 5, dtype=torch.float64)
    out = members_to_batch_major(layer(repeat_members(x, 4)), 4)
    for m in range(4):
        w_m = layer.weight * torch.outer(layer.r[m], layer.s[m])  # W ∘ r_m s_mᵀ ([BE] eq. 2)
        ref = x @ w_m.T + layer.member_bias[m]
        torch.testing.assert_close(out[:, m], ref, rtol=1e-12, atol=1e-12)


def test_conv_member_equals_explicit_rank_one_kernel() -> None:
    layer = BatchEnsembleConv2d(3, 4, 3, ensemble_size=2, stride=2, padding=1).double()
    _randomise_fast(layer)
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    y = layer(repeat_members(x, 2))
    assert y.shape == (10, 4, 4, 4)
    for m in range(2):
        w_m = layer.weight * torch.outer(layer.r[m], layer.s[m])[:, :, None, None]
        ref = nn.functional.conv2d(x, w_m, layer.member_bias[m], stride=2, padding=1)
        torch.testing.assert_close(y[m * 5:(m + 1) * 5], ref, rtol=1e-12, atol=1e-12)


def test_batch_not_multiple_of_members_names_the_problem() -> None:
    layer = BatchEnsembleLinear(4, 2, ensemble_size=3)
    with pytest.raises(ValueError, match="not a multiple of ensemble_size=3"):
        layer(torch.randn(4, 4))


@pytest.mark.parametrize("base", ["digits_cnn", "wrn"])
def test_be_with_one_member_and_unit_factors_equals_plain_model(base: str) -> None:
    torch.manual_seed(1)
    plain = (create_model("digits_cnn", 10, in_channels=1).net if base == "digits_cnn"
             else WideResNet(10, depth=10, width=1, in_channels=1)).double()
    be = BatchEnsembleNet.from_plain(plain, 1, fast_init="ones")
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    for mode in ("train", "eval"):
        plain.train(mode == "train")
        be.train(mode == "train")
        out = be(x)
        assert out.shape == (6, 1, 10)
        torch.testing.assert_close(out[:, 0], plain(x), rtol=1e-10, atol=1e-10)


def test_be_members_differ_and_output_is_batch_major() -> None:
    torch.manual_seed(0)
    model = create_model("batchensemble", 10, in_channels=1, ensemble_size=3)
    x = torch.rand(4, 1, 8, 8)
    out = model(x)
    assert out.shape == (4, 3, 10) and model.num_members == 3
    # Row b of member m must depend only on example b: permuting the batch permutes the output rows.
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(model(x[perm]), out[perm])
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-3  # random-sign fast weights → distinct members


def test_fast_weights_form_their_own_group_and_prior() -> None:
    model = create_model("latentbe", 10, in_channels=1, ensemble_size=2)
    slow, fast = split_fast_parameters(model)
    layers = list(be_layers(model))
    assert len(fast) == 2 * len(layers) and len(slow) + len(fast) == len(list(model.parameters()))
    for layer in layers:
        assert torch.equal(layer.r, torch.ones_like(layer.r))  # LatentBE init r = s = 1
        assert torch.equal(layer.s, torch.ones_like(layer.s))
        assert float(layer.fast_prior) == 1.0
    # weight decay on the fast group pulls r toward 1 ([LatentBE] Alg. 2 line 8)
    layer = layers[0]
    with torch.no_grad():
        layer.fast_r.fill_(0.5)  # r = 1.5
    opt = torch.optim.SGD([{"params": [layer.fast_r], "weight_decay": 0.1}], lr=1.0)
    layer.fast_r.grad = torch.zeros_like(layer.fast_r)
    opt.step()
    torch.testing.assert_close(layer.r, torch.full_like(layer.r, 1.45))


@pytest.mark.parametrize("base", ["digits_cnn", "wrn", "resnet18"])
def test_latentbe_merge_equals_factor_averaged_network(base: str) -> None:
    torch.manual_seed(0)
    if base == "digits_cnn":
        plain = create_model("digits_cnn", 10, in_channels=1).net
    elif base == "wrn":
        plain = WideResNet(10, depth=10, width=1, in_channels=1)
    else:
        plain = create_model("resnet18", 10, in_channels=1).net
    be = latentbe_student(plain.double(), 3)
    _randomise_fast(be)
    be.train()
    be(torch.rand(8, 1, 8, 8, dtype=torch.float64))  # non-trivial BN running statistics
    be.eval()
    merged = merge_to_single(be).eval()
    assert type(merged) is type(plain)
    assert not any(True for _ in be_layers(merged))
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in plain.parameters())
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = be.set_mode("averaged")(x)
        out = merged(x)
        be.set_mode("ensemble")
        members = be(x)
    assert out.shape == ref.shape == (5, 10)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    # the merge is a *weight* average, not an output average: they differ for a nonlinear net
    assert (members.mean(1) - out).abs().max() > 1e-6


def test_merge_of_normalized_model_keeps_normalisation() -> None:
    model = create_model("latentbe", 10, in_channels=1, ensemble_size=2, mean=[0.3], std=[0.2])
    _randomise_fast(model)
    model.eval()
    merged = merge_to_single(model)
    assert merged.num_members == 1
    torch.testing.assert_close(merged.mean, model.mean)
    x = torch.rand(3, 1, 8, 8)
    model.net.set_mode("averaged")
    torch.testing.assert_close(merged(x), model(x), rtol=1e-5, atol=1e-6)


def test_recalibrate_batchnorm_matches_batch_statistics() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    x = torch.randn(64, 3)
    n = recalibrate_batchnorm(net, [x[:32], x[32:]])
    h = net[0](x).detach()
    assert n == 2 and not net.training
    torch.testing.assert_close(net[1].running_mean, h.mean(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("base", ["digits_cnn", "wrn", "resnet18"])
def test_block_list_reproduces_the_network(base: str) -> None:
    torch.manual_seed(0)
    net = {"digits_cnn": lambda: create_model("digits_cnn", 10, in_channels=1).net,
           "wrn": lambda: WideResNet(10, depth=10, width=1, in_channels=1),
           "resnet18": lambda: create_model("resnet18", 10, in_channels=1).net}[base]().eval()
    x = torch.rand(3, 1, 8, 8)
    y = x
    for block in block_list(net):
        y = block(y)
    torch.testing.assert_close(y, net(x))


def test_hydra_phase_two_heads_start_equal_to_hinton_head() -> None:
    torch.manual_seed(0)
    model = create_model("hydra", 10, in_channels=1, num_heads=4, head_blocks=3)
    hydra: HydraNet = model.net
    assert hydra.num_members == 4 and len(list(hydra.heads)) == 4
    hydra.hinton_phase()
    x = torch.rand(6, 1, 8, 8)
    assert model(x).shape == (6, 1, 10) and model.num_members == 1
    # a few phase-1 steps on head 0 only: other heads must get no gradient
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(x)[:, 0].logsumexp(-1).mean().backward()
        opt.step()
    assert all(p.grad is None for p in hydra.heads[1].parameters())
    hinton_out = model(x)[:, 0].detach()
    assert (hydra.heads[1](hydra.body(x)) - hinton_out).abs().max() > 1e-4  # untouched head differs
    hydra.grow_heads()
    out = model(x)
    assert out.shape == (6, 4, 10) and model.num_members == 4
    for h in range(4):
        torch.testing.assert_close(out[:, h], hinton_out)
    # heads are independent copies, not shared modules
    with torch.no_grad():
        next(hydra.heads[2].parameters()).add_(1.0)
    assert (model(x)[:, 2] - model(x)[:, 1]).abs().max() > 1e-3
    # body parameters are shared: one body, heads hold only the last 3 blocks (2 Linear layers)
    assert sum(isinstance(m, nn.Linear) for m in hydra.heads[0].modules()) == 2


def test_hydra_rejects_bad_head_blocks() -> None:
    with pytest.raises(ValueError, match="head_blocks must be in"):
        create_model("hydra", 10, in_channels=1, num_heads=2, head_blocks=99)


@pytest.mark.parametrize("name,kw", [("be_resnet18", {}), ("be_wrn28", {"width": 1})])
def test_be_resnet_and_wrn_registry_entries(name: str, kw: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, 10, in_channels=1, ensemble_size=2, **kw).eval()
    n_conv = sum(isinstance(m, BatchEnsembleConv2d) for m in model.modules())
    assert n_conv >= 17 and not any(type(m) is nn.Conv2d for m in model.modules())
    x = torch.rand(3, 1, 8, 8)
    out = model(x)
    assert out.shape == (3, 2, 10)
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-4  # members differ (random ±1 fast weights)
