"""Fast paths of issue 16 against their references (float64, tiny networks):

* BatchEnsemble with the rank-one factors folded into grouped member weights (``BatchEnsembleNet`` default)
  equals the member-major reference ``r_m ∘ conv(s_m ∘ x; W)`` ([BE] eq. 2 as written, ``set_fast_path(False)``)
  in train and eval mode: outputs, gradients and BatchNorm running statistics;
* ``GroupedEnsemble`` (``build_ensemble(vectorize=True)`` with batch norm) equals the Python loop
  ``ModuleEnsemble`` over several SGD steps: outputs, parameters, running statistics, ``num_batches_tracked``;
  its state dict is the loop's.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from endist_vision.models import BatchEnsembleNet, GroupedEnsemble, ModuleEnsemble, build_ensemble, create_model
from endist_vision.models.layers import be_layers
from endist_vision.models.layers import grouped as grouped_layers

TOL = dict(rtol=1e-9, atol=1e-10)


def _be_pair(member_bn: bool) -> tuple[BatchEnsembleNet, BatchEnsembleNet]:
    torch.manual_seed(0)
    fast = BatchEnsembleNet.from_plain(create_model("resnet20", 5, in_channels=1).net.double(), 3, member_bn=member_bn)
    with torch.no_grad():  # trained-looking factors and biases (random signs are already ±1)
        for layer in be_layers(fast):
            for p in (layer.fast_r, layer.fast_s, layer.member_bias):
                if p is not None:
                    p.add_(0.3 * torch.randn_like(p))
    ref = copy.deepcopy(fast).set_fast_path(False)
    assert fast.fast_path and not ref.fast_path
    return fast, ref


@pytest.mark.parametrize("member_bn", [False, True])
def test_folded_batchensemble_equals_the_member_major_reference(member_bn: bool, monkeypatch) -> None:
    fast, ref = _be_pair(member_bn)
    opt_f = torch.optim.SGD(fast.parameters(), lr=0.05)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.05)
    for step in range(2):  # train mode: batch statistics, running-stat updates, gradients
        x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
        out_f, out_r = fast(x), ref(x)
        assert out_f.shape == (5, 3, 5)
        torch.testing.assert_close(out_f, out_r, **TOL)
        for net, out, opt in ((fast, out_f, opt_f), (ref, out_r, opt_r)):
            opt.zero_grad()
            out.log_softmax(-1)[:, :, 0].sum().backward()
        for (name, pf), pr in zip(fast.named_parameters(), ref.parameters()):
            torch.testing.assert_close(pf.grad, pr.grad, **TOL, msg=f"gradient of {name}")
        opt_f.step()
        opt_r.step()
    for (name, bf), br in zip(fast.named_buffers(), ref.buffers()):
        torch.testing.assert_close(bf, br, **TOL, msg=f"buffer {name}")
    fast.eval()
    ref.eval()
    x = torch.rand(7, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(fast(x), ref(x), **TOL)
    monkeypatch.setattr(grouped_layers, "CPU_EVAL_MIN_ELEMENTS", 0)  # CPU eval in uneven chunks
    monkeypatch.setattr(grouped_layers, "CPU_EVAL_CHUNK_ELEMENTS", 7 * 64)
    assert [len(c) for c in grouped_layers.cpu_eval_chunks(x, 3)] == [3, 3, 1]
    torch.testing.assert_close(fast(x), ref(x), **TOL)
    with torch.no_grad():
        for m in range(3):  # and each member is the plain network with weight W ∘ r_m s_mᵀ
            torch.testing.assert_close(fast.member(m)(x), ref(x)[:, m], **TOL)


def test_folded_member_weight_is_the_rank_one_product() -> None:
    fast, _ = _be_pair(False)
    layer = next(iter(be_layers(fast)))
    w = layer.member_weights()
    for m in range(3):
        expected = layer.weight * torch.outer(layer.r[m], layer.s[m])[:, :, None, None]  # [BE] eq. 2
        torch.testing.assert_close(w[m], expected, rtol=0, atol=0)


def _bn_member(seed: int, momentum: float | None = 0.1) -> nn.Module:
    torch.manual_seed(seed)
    net = create_model("resnet20", 5, in_channels=1, mean=[0.5], std=[0.25]).double()
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = momentum
    return net


def _mlp_bn_member(seed: int) -> nn.Module:  # Linear + BatchNorm1d with a cumulative average (momentum None)
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, momentum=None), nn.ReLU(), nn.Linear(8, 3)).double()


@pytest.mark.parametrize("make,shape", [(_bn_member, (1, 8, 8)), (_mlp_bn_member, (6,))])
def test_grouped_ensemble_equals_the_loop_in_train_and_eval(make, shape, monkeypatch) -> None:
    grouped = build_ensemble(make, 3, vectorize=True)
    assert isinstance(grouped, GroupedEnsemble) and isinstance(grouped, ModuleEnsemble)
    loop = ModuleEnsemble([copy.deepcopy(m) for m in grouped.members])
    assert list(grouped.state_dict()) == list(loop.state_dict())  # checkpoint layout of the loop
    opt_g = torch.optim.SGD(grouped.parameters(), lr=0.05)
    opt_l = torch.optim.SGD(loop.parameters(), lr=0.05)
    for step in range(3):
        if step < 2:  # each member on its own batch, as the ensemble method trains
            xs = torch.rand(3, 4, *shape, dtype=torch.float64)
            out_g, out_l = grouped.forward_members(xs), loop.forward_members(xs)
        else:  # all members on one batch
            x = torch.rand(4, *shape, dtype=torch.float64)
            out_g, out_l = grouped(x), loop(x)
        torch.testing.assert_close(out_g, out_l, **TOL)
        for out, opt in ((out_g, opt_g), (out_l, opt_l)):
            opt.zero_grad()
            out.log_softmax(-1)[..., 0].sum().backward()
            opt.step()
    for (name, tg), tl in zip(grouped.state_dict().items(), loop.state_dict().values()):
        torch.testing.assert_close(tg, tl, **TOL, msg=f"state {name} after 3 steps")
    tracked = [t for n, t in grouped.state_dict().items() if n.endswith("num_batches_tracked")]
    assert tracked and all(int(t) == 3 for t in tracked)
    grouped.eval()
    loop.eval()
    x = torch.rand(5, *shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(grouped(x), loop(x), **TOL)
        torch.testing.assert_close(grouped.subset(2)(x), loop(x)[:, :2], **TOL)
        monkeypatch.setattr(grouped_layers, "CPU_EVAL_MIN_ELEMENTS", 0)  # CPU eval in chunks (2, 2, 1)
        assert [len(c) for c in grouped_layers.cpu_eval_chunks(x, 3)] == [2, 2, 1]
        torch.testing.assert_close(grouped(x), loop(x), **TOL)


def test_grouped_ensemble_loads_a_loop_checkpoint_and_follows_dtype() -> None:
    loop = ModuleEnsemble([_bn_member(s) for s in (5, 6)]).eval()
    grouped = build_ensemble(lambda i: _bn_member(10 + i), 2, vectorize=True).eval()
    grouped.load_state_dict(loop.state_dict())  # today's ModuleEnsemble checkpoints load unchanged
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(grouped(x), loop(x), **TOL)
        grouped.float()
        assert grouped(x.float()).dtype == torch.float32
        torch.testing.assert_close(grouped(x.float()).double(), loop(x), rtol=1e-4, atol=1e-4)


def test_grouped_ensemble_refuses_members_it_cannot_group() -> None:
    def layer_norm_member(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.LayerNorm(4), nn.Linear(4, 2))

    with pytest.raises(ValueError, match="'2'.*LayerNorm"):
        build_ensemble(layer_norm_member, 2, vectorize=True)
    assert type(build_ensemble(layer_norm_member, 2)) is ModuleEnsemble  # "auto": the loop
