"""Paper-faithful defaults of endist_vision (issue 13, items 5, 6, 10–13).

Every expectation is an independent closed form written out here (linear warm-up then cosine, the last
5,000 indices, N(1, 0.5) moments, a hand-built Gram matrix), never the code under test run twice.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from vision_helpers import FAST

from endist_vision.config import DEFAULTS, build_config
from endist_vision.errors import ConfigError
from endist_vision.trainer import _scheduler, train


# ---- item 5: linear warm-up, then cosine ([LatentBE] App. B.2) ----------------------------------------
def _lrs(t: dict, total: int, spe: int, phase_starts=(0,)) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = _scheduler(opt, t, total, spe, phase_starts)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_is_linear_from_one_percent_then_cosine() -> None:
    t = {**DEFAULTS["train"], "schedule": "cosine", "warmup_epochs": 2}
    spe, total, base = 5, 40, 0.1
    lrs = _lrs(t, total, spe)
    w = 10  # 2 epochs × 5 steps
    want = [base * (0.01 + 0.99 * s / w) for s in range(w)]
    want += [base * 0.5 * (1 + math.cos(math.pi * (s - w) / (total - w))) for s in range(w, total)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12, atol=1e-15)
    assert lrs[w] == pytest.approx(base) and lrs[0] == pytest.approx(0.001)


def test_warmup_steps_override_and_no_warmup_keeps_torch_cosine() -> None:
    t = {**DEFAULTS["train"], "schedule": "cosine", "warmup_epochs": 5, "warmup_steps": 4}
    lrs = _lrs(t, 20, 100)
    np.testing.assert_allclose(lrs[:5], [0.1 * (0.01 + 0.99 * s / 4) for s in range(4)] + [0.1], rtol=1e-12)
    plain = _lrs({**DEFAULTS["train"], "schedule": "cosine"}, 20, 100)
    np.testing.assert_allclose(plain, [0.1 * 0.5 * (1 + math.cos(math.pi * s / 20)) for s in range(20)], rtol=1e-9)


def test_warmup_config_checks() -> None:
    with pytest.raises(ConfigError, match="onecycle has its own warm-up"):
        build_config("digits/individual", ["train.warmup_epochs=5"])  # digits recipe: one-cycle
    with pytest.raises(ConfigError, match="train.warmup_epochs must be an integer"):
        build_config("digits/individual", ["train.warmup_epochs=abc", "train.schedule=cosine"])
    with pytest.raises(ConfigError, match=r"train.warmup_start_factor must be in \(0, 1\]"):
        build_config("digits/individual", ["train.warmup_start_factor=0", "train.schedule=cosine"])


def test_warmup_in_a_real_run_and_exact_resume(tmp_path: Path) -> None:
    over = [*FAST, "train.log_every=1", "train.schedule=cosine", "train.warmup_steps=4", "train.max_steps=8",
            "train.ckpt_every=3", "train.optimizer=sgd", "train.lr=0.1", "model.kwargs={width: 4, hidden: 8}"]
    cfg = build_config("digits/individual", over)
    full = train(cfg, tmp_path / "full")
    lrs = [h["lr"] for h in full["history"]]  # LR after step s = LR of step s+1
    want = [0.1 * (0.01 + 0.99 * s / 4) for s in range(1, 4)] + [0.1 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 4)) for s in range(4, 9)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12, atol=1e-15)

    class Stop(Exception):
        pass

    def crash(ev):  # a kill after step 5 (checkpoint at step 3)
        if ev.step == 5:
            raise Stop

    with pytest.raises(Stop):
        train(copy.deepcopy(cfg), tmp_path / "cut", on_step_end=[crash])
    res = train(copy.deepcopy(cfg), tmp_path / "cut", resume=True)
    assert [h["lr"] for h in res["history"]] == lrs
    assert [h["loss"] for h in res["history"]] == [h["loss"] for h in full["history"]]


# ---- item 6: the paper's validation splits ([LatentBE] App. B.1) ----------------------------------------
def test_cifar_default_split_is_exactly_the_last_val_size_images(tmp_path: Path) -> None:
    from data_helpers import standins

    from endist_vision.data import get_loader, load_dataset

    root = standins.write_cifar(tmp_path, per_class=4)
    src = get_loader("cifar10", "data.name")(str(root), flag="data.root")
    n, k = len(src.train), 7
    data = {**DEFAULTS["data"], "name": "cifar10", "root": str(root), "val_size": k}
    bundle = load_dataset(data, with_ood=False)  # data.val_split: auto -> last for CIFAR
    assert np.array_equal(bundle.val.x, src.train.x[n - k:]) and torch.equal(bundle.val.y, src.train.y[n - k:])
    assert np.array_equal(bundle.train.x, src.train.x[: n - k])
    rnd = load_dataset({**data, "val_split": "random"}, with_ood=False)  # today's split stays reachable
    perm = np.random.default_rng(0).permutation(n)
    assert torch.equal(rnd.val.y, src.train.y[np.sort(perm[:k])])


def _write_tinyimagenet(root: Path, wnids: list[str], per_class: int) -> None:
    from PIL import Image

    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids))
    lines = []
    for c, w in enumerate(wnids):
        d = root / "train" / w / "images"
        d.mkdir(parents=True)
        for i in range(per_class):  # one flat colour per (class, image): the image identifies itself
            Image.new("RGB", (8, 8), (40 * c, 20 * i, 100)).save(d / f"{w}_{i}.png")
        Image.new("RGB", (8, 8), (40 * c, 0, 0)).save(root / "val" / "images" / f"val_{c}.png")
        lines.append(f"val_{c}.png\t{w}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines))


def test_tinyimagenet_default_split_is_the_last_images_of_every_class(tmp_path: Path) -> None:
    from endist_vision.data import load_dataset

    _write_tinyimagenet(tmp_path, ["n01", "n02", "n03"], per_class=5)
    data = {**DEFAULTS["data"], "name": "tinyimagenet", "root": str(tmp_path), "image_size": 8, "val_size": 6}
    bundle = load_dataset(data, with_ood=False)
    # 2 per class: images 3 and 4 of each class, colours (40c, 20i, 100)
    val = bundle.val.get(np.arange(len(bundle.val)), None, None)[0]
    pairs = sorted((round(float(v[0, 0, 0]) * 255 / 40), round(float(v[1, 0, 0]) * 255 / 20)) for v in val)
    assert pairs == [(c, i) for c in range(3) for i in (3, 4)]
    assert sorted(bundle.val.y.tolist()) == [0, 0, 1, 1, 2, 2] and len(bundle.train) == 9
    from endist_vision.errors import DatasetError

    with pytest.raises(DatasetError, match="multiple of the 3 classes"):
        load_dataset({**data, "val_size": 4}, with_ood=False)


# ---- item 10: BE student defaults of the uncertainty-baselines BatchEnsemble script ([BE] §4) -------------
def _method(name: str, over: list[str]):
    from endist_vision.methods import get_method

    cfg = build_config("digits/individual", [f"method={name}", *over])
    return get_method(name)(cfg, 10, 100, teacher_members=4)


def test_be_student_fast_weights_start_normal_1_half_and_learn_at_half_lr() -> None:
    from endist_vision.data import load_dataset
    from endist_vision.models.layers import split_fast_parameters
    from endist_vision.trainer import _make_model_fn

    over = ["model.name=mlp", "model.kwargs={in_features: 64, hidden: 256, depth: 2, width: null}", "method_args.members=4"]
    method = _method("batchensemble", over)
    cfg = method.cfg
    model = method.build_student(_make_model_fn(cfg, load_dataset(cfg["data"], with_ood=False)))
    _, fast = split_fast_parameters(model)
    r_s = torch.cat([(p.detach() + 0.0).flatten() for p in fast])  # fast_prior 0: r = fast_r
    n = r_s.numel()
    assert n > 4000
    # N(1, 0.5²): sample mean within 5 standard errors, sample std within 5 s.e. (≈ σ/√(2n))
    assert abs(float(r_s.mean()) - 1.0) < 5 * 0.5 / math.sqrt(n)
    assert abs(float(r_s.std()) - 0.5) < 5 * 0.5 / math.sqrt(2 * n)
    assert float((r_s < 0).float().mean()) == pytest.approx(0.02275, abs=0.01)  # P(N(1, 0.25) < 0) = Φ(−2)
    groups = method.param_groups(model, 0.1, 5e-4)
    assert groups[1]["params"] == fast and groups[1]["lr"] == pytest.approx(0.05) and groups[0]["lr"] == 0.1
    old = _method("batchensemble", [*over, "method_args.fast_init=random_sign", "method_args.fast_lr_mult=1.0"])
    m2 = old.build_student(_make_model_fn(cfg, load_dataset(cfg["data"], with_ood=False)))
    assert set(torch.cat([p.detach().flatten() for p in split_fast_parameters(m2)[1]]).tolist()) == {-1.0, 1.0}


# ---- item 12: Hydra phase 1 with its own budget and schedule; the MNIST head [100, 100, 10] ([Hydra] §2–3) -----
def test_onecycle_lambda_matches_torch_onecycle() -> None:
    t = {**DEFAULTS["train"], "schedule": "onecycle", "pct_start": 0.3}
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=30, pct_start=0.3, cycle_momentum=False)
    want = []
    for _ in range(30):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    got = _lrs(t, 60, 1, phase_starts=(0, 30))  # two phases of 30 steps: the one-cycle runs twice
    np.testing.assert_allclose(got[:30], want, rtol=1e-9)
    np.testing.assert_allclose(got[30:], want, rtol=1e-9)


def test_hydra_phase1_has_its_own_epochs_and_lr_restart(tmp_path: Path, digits_teacher: Path) -> None:
    over = [*FAST, "train.log_every=1", f"distill.teacher={digits_teacher}", "train.epochs=1", "train.batch_size=256",
            "method_args.phase1_epochs=2", "method_args.head_blocks=2", "train.schedule=cosine",
            "model.kwargs={width: 4, hidden: 8}"]
    cfg = build_config("digits/hydra", over)
    res = train(cfg, tmp_path / "hydra")
    spe = res["steps_per_epoch"]
    assert res["total_steps"] == 3 * spe  # phase 1: 2 epochs on top of train.epochs = 1
    phase = [h["hydra/phase"] for h in res["history"]]  # logged with the index of the step just done
    assert phase == [1.0] * (2 * spe) + [2.0] * spe
    lrs = [h["lr"] for h in res["history"]]  # LR of the next step: phase 2 starts again at the full lr
    p1, lr = 2 * spe, cfg["train"]["lr"]
    np.testing.assert_allclose(lrs[: p1 - 1], [lr * 0.5 * (1 + math.cos(math.pi * s / p1)) for s in range(1, p1)], rtol=1e-9)
    assert lrs[p1 - 1] == pytest.approx(lr)
    from endist_vision.checkpoint import load_checkpoint

    assert int(load_checkpoint(tmp_path / "hydra" / "checkpoints" / "final.pt")["model"]["net.active_heads"]) == 4


def test_hydra_mnist_recipe_uses_the_paper_head_on_the_member_body() -> None:
    from endist_vision.models import HydraNet, create_model, raw_net

    cfg = build_config("hydra/mnist/mlp/hydra", [])
    args = cfg["method_args"]
    assert args["head_mlp"] == [100, 100] and args["head_blocks"] == 1 and args["phase1_epochs"] >= 1
    member = raw_net(create_model("mlp", 10, in_channels=1, **cfg["model"]["kwargs"]))
    net = HydraNet.from_network(member, args["head_blocks"], 3, head_mlp=args["head_mlp"])
    shape = lambda mod: [(m.in_features, m.out_features) for m in mod.modules() if isinstance(m, nn.Linear)]  # noqa: E731
    assert shape(net.body) == [(784, 200), (200, 200)]
    assert all(shape(h) == [(200, 100), (100, 100), (100, 10)] for h in net.heads)
    x = torch.rand(5, 1, 28, 28)
    assert net(x).shape == (5, 3, 10)
    ref = net.heads[1](net.body(x))  # head 1 alone on the body features
    torch.testing.assert_close(net(x)[:, 1], ref)


# ---- item 13: AE-KD Gram matrix: per-example sum ([LatentBE] eq. 28 over a batch) or the authors' batch mean ------
def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_aekd_batch_mean_gram_is_the_authors_choice_and_differs_from_the_sum() -> None:
    from scipy.optimize import minimize

    from shared.losses import aekd_weights

    rng = np.random.default_rng(3)
    b, m, k, tau, cap = 6, 3, 5, 2.0, 0.8
    z = rng.normal(size=(b, k)) * 2
    t = np.log(_softmax(rng.normal(size=(b, m, k)) * 3))
    g = tau * (_softmax(z / tau)[:, None, :] - _softmax(t / tau))  # [B, M, K], dℓ_m/dz by hand
    grams = {"sum": np.einsum("bmk,bnk->mn", g, g)}
    gbar = g.mean(0)  # [M, K]
    grams["batch_mean"] = gbar @ gbar.T
    got = {}
    for name, gram in grams.items():
        res = minimize(lambda w: 0.5 * w @ gram @ w, np.full(m, 1 / m), jac=lambda w: gram @ w, bounds=[(0, cap)] * m,
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], method="SLSQP",
                       options={"ftol": 1e-15, "maxiter": 500})
        got[name] = aekd_weights(torch.tensor(z), torch.tensor(t), tau, cap, gram=name).numpy()
        np.testing.assert_allclose(got[name], res.x, atol=1e-5)
    assert np.abs(got["sum"] - got["batch_mean"]).max() > 1e-2
    default = aekd_weights(torch.tensor(z), torch.tensor(t), tau, cap).numpy()
    np.testing.assert_allclose(default, got["sum"], atol=1e-12)  # the paper's objective stays the default


def test_aekd_method_passes_its_gram_option() -> None:
    from shared.losses import aekd_weights

    torch.manual_seed(0)
    z, t = torch.randn(8, 10) * 2, torch.log_softmax(torch.randn(8, 4, 10) * 3, -1)
    method = _method("aekd", ["method_args.aekd_gram=batch_mean", "method_args.temperature=2.0"])
    method.loss(z, t, 0)
    w = method._last_weights
    np.testing.assert_allclose(w.numpy(), aekd_weights(z, t, 2.0, 0.6, gram="batch_mean").numpy(), atol=1e-7)
    with pytest.raises(ConfigError, match="aekd_gram"):
        _method("aekd", ["method_args.aekd_gram=mean"])


# ---- item 11: per-member BatchNorm and BE+INIT ([BE] §2 footnote 1, §4) -------------------------------------------
def _bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))


def test_member_batchnorm_normalises_each_member_on_its_own_rows() -> None:
    from endist_vision.models import BatchEnsembleNet

    torch.manual_seed(0)
    be = BatchEnsembleNet.from_plain(_bn_net(), 3, fast_init="normal", member_bn=True).train()
    x = torch.rand(6, 1, 8, 8)
    members = [be.member(m).train() for m in range(3)]  # plain nets, their own BN, before the forward
    out = be(x)
    for m in range(3):  # training mode: member m's BN sees only its 6 rows, exactly like the plain member
        torch.testing.assert_close(out[:, m], members[m](x), rtol=1e-5, atol=1e-5)
    means = torch.stack([bn.running_mean for bn in be.body[1].bns])
    assert float((means[0] - means[1]).abs().max()) > 1e-4  # running statistics kept per member
    shared = BatchEnsembleNet.from_plain(_bn_net(), 3, fast_init="normal").train()
    assert isinstance(shared.body[1], nn.BatchNorm2d)  # the default stays the shared BN of the reference code
    with pytest.raises(ValueError, match="shared BatchNorm"):
        be.set_mode("averaged")


def test_rank_one_factorisation_recovers_exact_be_weights_and_never_increases_the_objective() -> None:
    from endist_vision.models.layers import factorize_ensemble
    from endist_vision.models.layers.batchensemble import factorization_error

    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(6, 5, 3, 3, generator=g, dtype=torch.float64)
    r, s = 1 + 0.5 * torch.randn(4, 6, generator=g, dtype=torch.float64), 1 + 0.5 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    exact = torch.stack([w0 * torch.outer(r[i], s[i])[:, :, None, None] for i in range(4)])
    fw, fr, fs = factorize_ensemble(exact, iters=300)
    assert factorization_error(exact, fw, fr, fs) < 1e-12 * float((exact ** 2).sum())
    rand = torch.randn(4, 6, 5, 3, 3, generator=g, dtype=torch.float64)
    errs = [factorization_error(rand, *factorize_ensemble(rand, iters=i)) for i in (1, 2, 5, 20)]
    mean_init = float(((rand - rand.mean(0)) ** 2).sum())  # W0 = mean, r = s = 1
    assert all(a >= b - 1e-9 for a, b in zip([mean_init, *errs], errs)) and errs[-1] < 0.95 * mean_init


def test_be_init_from_members_reproduces_factorisable_members() -> None:
    from endist_vision.models import BatchEnsembleNet

    torch.manual_seed(2)
    base = _bn_net()
    members = []
    for i in range(3):  # members whose weights are exactly W ∘ r_i s_iᵀ, with own biases and BN statistics
        net = copy.deepcopy(base)
        with torch.no_grad():
            for lin in (net[0], net[4]):
                r, s = 1 + 0.3 * torch.randn(lin.weight.shape[0]), 1 + 0.3 * torch.randn(lin.weight.shape[1])
                lin.weight.mul_(torch.outer(r, s).reshape(*lin.weight.shape[:2], *([1] * (lin.weight.dim() - 2))))
                lin.bias.normal_()
            net[1].running_mean.normal_()
            net[1].running_var.uniform_(0.5, 2.0)
            net[1].weight.normal_()
        members.append(net.eval())
    be = BatchEnsembleNet.from_plain(base, 3, member_bn=True).init_from_members(members, iters=300).eval()
    x = torch.rand(4, 1, 8, 8)
    out = be(x)
    for i in range(3):
        torch.testing.assert_close(out[:, i], members[i](x), rtol=1e-4, atol=1e-4)


def test_batchensemble_teacher_init_wires_the_teacher_members(tmp_path: Path, digits_teacher: Path) -> None:
    from endist_vision.distributed import init_distributed
    from endist_vision.models import raw_net
    from endist_vision.models.layers import factorize_ensemble
    from endist_vision.trainer import build_state, plan_run

    cfg = build_config("digits/batchensemble", [f"distill.teacher={digits_teacher}", "method_args.teacher_init=true",
                                                "model.kwargs={width: 8, hidden: 32}", "train.device=cpu"])
    plan = plan_run(cfg, tmp_path / "be_init", False, init_distributed("cpu"))
    state = build_state(plan)
    teacher_net = raw_net(plan.teacher.models[0])
    first = [raw_net(teacher_net.member(i))[0].weight.detach() for i in range(4)]
    w0, r, s = factorize_ensemble(torch.stack(first))
    layer = raw_net(state.model).body[0]
    torch.testing.assert_close(layer.weight, w0)
    torch.testing.assert_close(layer.r, r)
    assert not (tmp_path / "be_init").exists()  # planning and building write nothing
