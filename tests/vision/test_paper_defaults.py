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
    with pytest.raises(Exception, match="multiple of the 3 classes"):
        load_dataset({**data, "val_size": 4}, with_ood=False)


# ---- item 10: BE student defaults of the uncertainty-baselines BatchEnsemble script ([BE] §4) -------------
def _method(name: str, over: list[str]):
    from endist_vision.methods import get_method

    cfg = build_config("digits/individual", [f"method={name}", *over])
    return get_method(name)(cfg, 10, 100, teacher_members=4)


def test_be_student_fast_weights_start_normal_1_half_and_learn_at_half_lr() -> None:
    from endist_vision.models.layers import split_fast_parameters

    from endist_vision.data import load_dataset
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
