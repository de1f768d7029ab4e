"""Model registry, normalisation inside models, vectorised ensembles, data loaders and augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from endist_vision.data import load_dataset
from endist_vision.data.augment import cifar_augment
from endist_vision.data.embedded import AUX_RING, make_spirals
from endist_vision.errors import DatasetError
from endist_vision.models import ModuleEnsemble, StackedEnsemble, build_ensemble, create_model, register_model


@pytest.mark.parametrize("name,kw,shape", [
    ("resnet18", {"stem": "cifar"}, (2, 3, 32, 32)), ("resnet18", {"stem": "imagenet"}, (2, 3, 64, 64)),
    ("resnet34", {}, (1, 3, 32, 32)), ("resnet50", {"zero_init_residual": True}, (1, 3, 32, 32)),
    ("vgg16_bn", {"dropout": 0.5}, (2, 3, 32, 32)), ("wrn28", {"width": 1}, (2, 3, 32, 32)),
    ("mlp", {"in_channels": 2}, (5, 2)), ("digits_cnn", {"in_channels": 1}, (3, 1, 8, 8)),
])
def test_registry_models_output_logits(name: str, kw: dict, shape: tuple) -> None:
    m = create_model(name, 7, **kw).eval()
    assert m(torch.rand(shape)).shape == (shape[0], 7)


def test_cifar_stem_keeps_resolution() -> None:
    cifar = create_model("resnet18", 10, stem="cifar").net
    imnet = create_model("resnet18", 10, stem="imagenet").net
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1) and isinstance(cifar.maxpool, nn.Identity)
    assert imnet.conv1.kernel_size == (7, 7) and imnet.conv1.stride == (2, 2) and isinstance(imnet.maxpool, nn.MaxPool2d)


def test_normalisation_inside_model() -> None:
    torch.manual_seed(0)
    m = create_model("digits_cnn", 10, in_channels=1, mean=[0.3], std=[0.4]).eval()
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(m(x), m.net((x - 0.3) / 0.4))


def test_register_model_rejects_duplicates() -> None:
    @register_model("tiny_test_model")
    def tiny(num_classes: int, **kw: object) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes))

    assert create_model("tiny_test_model", 3, in_channels=1)(torch.rand(2, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_model")(lambda num_classes, **kw: nn.Identity())


@pytest.mark.parametrize("name,kw,shape", [("mlp", {"in_channels": 2, "dropout": 0.0}, (6, 2)), ("digits_cnn", {"in_channels": 1, "width": 4}, (6, 1, 8, 8))])
def test_stacked_ensemble_equals_members(name: str, kw: dict, shape: tuple) -> None:
    members = [(torch.manual_seed(i), create_model(name, 3, **kw))[1] for i in range(4)]
    ens = StackedEnsemble(members).eval()
    x = torch.rand(shape)
    out = ens(x)
    assert out.shape == (6, 4, 3)
    for i, m in enumerate(members):
        torch.testing.assert_close(out[:, i], m.eval()(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ens.member(i)(x), m(x), atol=1e-6, rtol=0)
    xs = torch.rand(4, *shape)
    per = ens.forward_members(xs)
    torch.testing.assert_close(per[:, 2], members[2](xs[2]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ens.subset(2)(x), out[:, :2], atol=1e-6, rtol=0)


def test_batchnorm_members_use_module_ensemble() -> None:
    ens = build_ensemble(lambda i: (torch.manual_seed(i), create_model("resnet18", 5))[1], 2)
    assert isinstance(ens, ModuleEnsemble)
    assert ens.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 2, 5)


def test_spirals_and_aux_ring() -> None:
    x, y = make_spirals(1000, seed=1)
    assert x.shape == (3000, 2) and torch.bincount(y).tolist() == [1000, 1000, 1000]
    b = load_dataset({"name": "spirals", "val_size": 300, "aux": "spirals_ring", "ood": ["spirals_far"]})
    r = b.aux.x.norm(dim=1)
    assert r.min() >= AUX_RING[0] - 1e-6 and r.max() <= AUX_RING[1] + 1e-6
    assert b.train.x.norm(dim=1).quantile(0.99) < AUX_RING[0]  # the ring is away from the data
    assert (b.aux.y == -1).all() and len(b.train) == 2700 and len(b.val) == 300
    assert len(b.test) == 3000


def test_fixed_validation_split() -> None:
    a = load_dataset({"name": "digits", "val_size": 150})
    b = load_dataset({"name": "digits", "val_size": 150})
    assert torch.equal(a.val.x, b.val.x) and len(a.train) + len(a.val) + len(a.test) == 1797
    flat = lambda d: {tuple(r) for r in d.x.reshape(len(d), -1).tolist()}
    assert len(flat(a.val) & flat(a.test)) <= 2  # sklearn digits has a couple of exact duplicates


def _write_cifar(root: Path, n: int = 20, k: int = 10, bad_label: bool = False) -> None:
    root.mkdir()
    g = np.random.default_rng(0)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in g.integers(0, k, n)]  # Python ints, as in the real files
        if bad_label and f == "test_batch":
            labels[0] = k + 5
        with open(root / f, "wb") as fh:
            pickle.dump({b"data": g.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": labels}, fh)


def test_cifar_pickle_loader(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "c10")
    b = load_dataset({"name": "cifar10", "root": str(tmp_path / "c10"), "val_size": 10})
    assert len(b.train) == 90 and len(b.val) == 10 and len(b.test) == 20 and b.num_classes == 10
    x, y = b.train.get(np.arange(4))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    _write_cifar(tmp_path / "bad", bad_label=True)
    with pytest.raises(DatasetError, match="labels span"):
        load_dataset({"name": "cifar10", "root": str(tmp_path / "bad"), "val_size": 10})
    (tmp_path / "c10" / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset({"name": "cifar10", "root": str(tmp_path / "c10"), "val_size": 10})


def test_svhn_and_imagefolder(tmp_path: Path) -> None:
    from PIL import Image
    from scipy.io import savemat

    (tmp_path / "svhn").mkdir()
    savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": np.random.default_rng(0).integers(0, 256, (32, 32, 3, 7), dtype=np.uint8),
                                                   "y": np.array([[10], [1], [2], [3], [4], [5], [6]])})
    (tmp_path / "lsun" / "a").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((40, 50, 3), 30 * i, dtype=np.uint8)).save(tmp_path / "lsun" / "a" / f"{i}.png")
    _write_cifar(tmp_path / "c10")
    b = load_dataset({"name": "cifar10", "root": str(tmp_path / "c10"), "val_size": 10,
                      "ood": [{"name": "svhn", "root": str(tmp_path / "svhn")}, {"name": "imagefolder", "root": str(tmp_path / "lsun"), "label": "LSUN"}]})
    assert b.ood["svhn"].x.shape == (7, 32, 32, 3) and b.ood["LSUN"].x.shape == (3, 32, 32, 3)
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset({"name": "cifar10", "root": str(tmp_path / "c10"), "val_size": 10, "ood": [{"name": "imagefolder", "root": str(tmp_path / "svhn")}]})


def test_albumentations_augment_is_seeded_and_valid() -> None:
    aug = cifar_augment(32)
    batch = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    seeds = np.arange(6)
    a, b = aug(batch, seeds), aug(batch, seeds)
    assert a.shape == batch.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    c = aug(batch, seeds + 100)
    assert not np.array_equal(a, c) and not np.array_equal(a, batch)
    # per-sample seeds: an image's augmentation does not depend on its batch neighbours
    assert np.array_equal(aug(batch[2:3], seeds[2:3])[0], a[2])


def test_evaluation_reads_outputs_by_convention() -> None:
    """[B, M, K] → ensemble (p̄ = mean softmax); [B, K] + dirichlet meta → p̂ = α/α₀ with α = exp(z) + offset;
    [B, K] categorical → softmax with zero knowledge uncertainty."""
    from endist_vision.evaluation import summarize

    torch.manual_seed(0)
    z = torch.randn(5, 4, 3)
    s = summarize(z, {})
    assert s.kind == "ensemble"
    torch.testing.assert_close(s.probs, z.double().softmax(-1).mean(1))
    assert (s.unc["mutual_information"] >= -1e-12).all()
    d = summarize(z[:, 0], {"output": "dirichlet", "dirichlet_offset": 1.0})
    alpha = z[:, 0].double().exp() + 1.0
    torch.testing.assert_close(d.probs, alpha / alpha.sum(-1, keepdim=True))
    torch.testing.assert_close(d.unc["epkl"], (3 - 1) / alpha.sum(-1))  # closed form (K−1)/α₀
    c = summarize(z[:, 0], {"output": "categorical"})
    torch.testing.assert_close(c.probs, z[:, 0].double().softmax(-1))
    assert torch.allclose(c.unc["mutual_information"], torch.zeros(5, dtype=torch.float64), atol=1e-12) and not c.has_knowledge
