"""Lazily decoded ImageNet, labelled shift sets (ImageNet-A/R/C, CIFAR-10-C), MNIST IDX and their errors,
read from the stand-ins of ``scripts/lib/standins.py`` (real on-disk layouts). Expected labels are
derived from the written files (folder names, .npy contents, IDX bytes), never from the loaders."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from data_helpers import standins
from vision_helpers import run_cli

from endist_vision.data import FileDataset, ShiftSet, load_dataset, load_shift_sets
from endist_vision.data.augment import build_augment
from endist_vision.errors import DatasetError
from endist_vision.evaluation import evaluate_shift

A_WNIDS, CORRUPTIONS, R_WNIDS, write_standins = standins.A_WNIDS, standins.CORRUPTIONS, standins.R_WNIDS, standins.write_standins

SIZE = 24


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("standins")
    write_standins(out, ["imagenet", "imagenet-a", "imagenet-r", "imagenet-c", "cifar10", "cifar10-c", "mnist"], per_class=4)
    return out


@pytest.fixture(scope="module")
def inet(sd: Path):  # noqa: ANN201
    return load_dataset({"name": "imagenet", "root": str(sd / "imagenet"), "val_size": 8, "image_size": SIZE})


def _files(root: Path) -> list[tuple[str, str]]:
    """(wnid folder, file path) of every image below ``root/<wnid>/``, from the file system."""
    return [(d, str(root / d / f)) for d in sorted(os.listdir(root)) for f in os.listdir(root / d)]


def test_imagenet_labels_match_folders(sd: Path, inet) -> None:  # noqa: ANN001
    wnids = sorted(os.listdir(sd / "imagenet" / "train"))
    assert inet.classes == wnids and inet.num_classes == 10
    train_files = _files(sd / "imagenet" / "train")
    assert len(inet.train) + len(inet.val) == len(train_files) == 40
    expected = {p: wnids.index(w) for w, p in train_files + _files(sd / "imagenet" / "val")}
    for ds in (inet.train, inet.val, inet.test):
        assert isinstance(ds, FileDataset)
        got = {ds.path(i): int(ds.y[i]) for i in range(len(ds))}
        assert all(expected[p] == y for p, y in got.items())
    assert {inet.test.path(i) for i in range(len(inet.test))} == {p for _, p in _files(sd / "imagenet" / "val")}


def test_imagenet_eval_transform_is_resize_and_center_crop(inet) -> None:  # noqa: ANN001
    """A file's eval input equals Resize(round(24·256/224) = 27) + CenterCrop(24) done by hand with PIL."""
    i = 3
    with Image.open(inet.test.path(i)) as im:
        im = im.convert("RGB")
        w, h = im.size
        nw, nh = (27, int(27 * h / w)) if w <= h else (int(27 * w / h), 27)  # shorter side 27, longer truncated
        r = np.asarray(im.resize((nw, nh), Image.BILINEAR), dtype=np.float64)
    top, left = int(round((r.shape[0] - SIZE) / 2)), int(round((r.shape[1] - SIZE) / 2))
    want = r[top : top + SIZE, left : left + SIZE]
    x, _ = inet.test.get(np.array([i]))
    assert x.shape == (1, 3, SIZE, SIZE) and x.dtype == torch.float32
    got = x[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(got - want).mean() < 2.0  # PIL vs torchvision resize rounding only


def test_imagenet_train_augment_is_seeded_per_sample(inet, monkeypatch) -> None:  # noqa: ANN001
    aug = build_augment("imagenet", SIZE)
    idx = np.arange(6)
    cuda_reseeds = []  # torch.manual_seed would also reseed the GPUs' generators (not restored by fork_rng)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: cuda_reseeds.append(seed))
    before = torch.get_rng_state()
    a, _ = inet.train.get(idx, aug, np.arange(6) + 100)
    assert torch.equal(before, torch.get_rng_state())  # dropout's RNG stream is untouched
    assert cuda_reseeds == [], "the augmentation reseeded the CUDA generators"
    b, _ = inet.train.get(idx[::-1].copy(), aug, (np.arange(6) + 100)[::-1].copy())  # other batch order, same seeds
    c, _ = inet.train.get(idx, aug, np.arange(6) + 200)
    plain, _ = inet.train.get(idx)
    assert a.shape == (6, 3, SIZE, SIZE) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b.flip(0))
    assert not torch.equal(a, c) and not torch.equal(a, plain)


@pytest.mark.parametrize("name,wnids", [("imagenet_a", A_WNIDS), ("imagenet_r", R_WNIDS)])
def test_imagenet_a_r_map_by_wnid_and_restrict(sd: Path, inet, name: str, wnids: list[str]) -> None:  # noqa: ANN001
    root = sd / name.replace("_", "-")
    s = load_shift_sets([f"X={name}:{root}"], inet)["X"]
    folders = sorted(os.listdir(root))
    assert folders == sorted(wnids) and len(folders) == 6
    assert s.class_index.tolist() == sorted(inet.classes.index(w) for w in folders)
    ds = s.subsets[""]
    files = dict((p, w) for w, p in _files(root))
    assert len(ds) == len(files)
    for i in range(len(ds)):  # label = position of the folder's wnid among the kept logits
        assert inet.classes[s.class_index[int(ds.y[i])]] == files[ds.path(i)]


class _ConstantLogits(torch.nn.Module):
    """Ignores its input; the same logits for every image."""

    def __init__(self, z: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("z", z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z.expand(len(x), *self.z.shape)


def test_a_restriction_changes_predictions_as_the_mask_says(sd: Path, inet) -> None:  # noqa: ANN001
    """Class 1 (not an ImageNet-A wnid) has the top logit, class 0 the second: unrestricted nothing is
    right; restricted to A's wnids, every image of wnid n00000000 is right — for single models and for
    ensembles ([B, M, K])."""
    s = load_shift_sets([f"A=imagenet_a:{sd / 'imagenet-a'}"], inet)["A"]
    z = torch.full((10,), -5.0)
    z[1], z[0] = 9.0, 4.0
    n0 = len(os.listdir(sd / "imagenet-a" / "n00000000"))
    want = n0 / sum(len(os.listdir(sd / "imagenet-a" / w)) for w in A_WNIDS)
    ds = s.subsets[""]
    full = ShiftSet("A", "imagenet_a", {"": ds.with_labels(s.class_index[ds.y.numpy()])}, None)  # labels = model classes, all logits
    for model in (_ConstantLogits(z), _ConstantLogits(torch.stack([z, z + 0.5 * torch.arange(10.0) / 10]))):
        r = evaluate_shift(model, s, {"num_classes": 10}, 1.0)
        assert r["classes"] == 6 and r["mean"]["accuracy"] == pytest.approx(want) and want > 0
        r = evaluate_shift(model, full, {"num_classes": 10}, 1.0)
        assert r["classes"] == 10 and r["mean"]["accuracy"] == 0.0  # class 1 always wins, never a label


def test_imagenet_c_subsets_and_max_per_set(sd: Path, inet) -> None:  # noqa: ANN001
    root = sd / "imagenet-c"
    s = load_shift_sets([f"C=imagenet_c:{root}"], inet)["C"]
    want = {f"{c}/{v}" for c in os.listdir(root) for v in os.listdir(root / c)}
    assert set(s.subsets) == want and len(want) == len(CORRUPTIONS) * 5 and s.corrupted
    ds = s.subsets["contrast/3"]
    files = dict((p, w) for w, p in _files(root / "contrast" / "3"))
    assert {ds.path(i): inet.classes[int(ds.y[i])] for i in range(len(ds))} == files
    a = load_shift_sets([{"name": "imagenet_c", "root": str(root), "label": "C", "max_per_set": 7}], inet)["C"]
    b = load_shift_sets([f"C=imagenet_c:{root}"], inet, max_per_set=7)["C"]
    for k in want:
        pa = [a.subsets[k].path(i) for i in range(len(a.subsets[k]))]
        assert len(pa) == 7 and pa == [b.subsets[k].path(i) for i in range(7)]  # deterministic, model-independent
        assert set(pa) <= {s.subsets[k].path(i) for i in range(len(s.subsets[k]))}


def test_cifar10_c_severity_blocks(sd: Path) -> None:
    bundle = load_dataset({"name": "cifar10", "root": str(sd / "cifar-10-batches-py"), "val_size": 8})
    s = load_shift_sets([f"C10=cifar10_c:{sd / 'cifar-10-c'}"], bundle)["C10"]
    labels = np.load(sd / "cifar-10-c" / "labels.npy")
    n = len(labels) // 5
    assert n == 40 and set(s.subsets) == {f"{c}/{v}" for c in CORRUPTIONS for v in range(1, 6)}
    for c in CORRUPTIONS:
        arr = np.load(sd / "cifar-10-c" / f"{c}.npy")
        for sev in range(1, 6):
            x, y = s.subsets[f"{c}/{sev}"].get(np.arange(n))
            block = arr[(sev - 1) * n : sev * n]
            assert torch.equal(x, torch.from_numpy(block).permute(0, 3, 1, 2).float() / 255)
            assert y.tolist() == labels[(sev - 1) * n : sev * n].tolist()
    # severity order is real: contrast shrinks the spread of the pixels as the severity grows
    spread = [float(s.subsets[f"contrast/{v}"].get(np.arange(n))[0].std()) for v in range(1, 6)]
    assert spread == sorted(spread, reverse=True)


def _idx_labels(path: Path) -> list[int]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    magic, n = struct.unpack(">II", data[:8])
    assert magic == 2049
    return list(data[8 : 8 + n])


def test_mnist_both_layouts(sd: Path, tmp_path: Path) -> None:
    standins.write_mnist(tmp_path / "raw", per_class=3, raw_layout=True)
    for root, lab in ((sd / "mnist", sd / "mnist" / "t10k-labels-idx1-ubyte.gz"),
                      (tmp_path / "raw", tmp_path / "raw" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte")):
        b = load_dataset({"name": "mnist", "root": str(root), "val_size": 5})
        assert b.num_classes == 10 and b.train.input_shape == (1, 28, 28) and b.in_channels == 1
        assert b.test.y.tolist() == _idx_labels(lab)
        x, _ = b.test.get(np.arange(3))
        assert x.shape == (3, 1, 28, 28) and float(x[:, :, :2].max()) == 0.0 and float(x.max()) > 0.5  # 2-px zero border


def test_bad_directories_name_flag_and_path(sd: Path, inet, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(DatasetError, match=r"data\.root=.*no_such.*does not exist"):
        load_dataset({"name": "imagenet", "root": str(tmp_path / "no_such"), "val_size": 2})
    bad = tmp_path / "inet"
    (bad / "train" / "n1").mkdir(parents=True)
    (bad / "train" / "n2").mkdir()
    Image.new("RGB", (8, 8)).save(bad / "train" / "n1" / "a.JPEG")
    with pytest.raises(DatasetError, match=rf"data\.root.*class folder {bad / 'train' / 'n2'} has no image files"):
        load_dataset({"name": "imagenet", "root": str(bad), "val_size": 2})
    (bad / "train" / "n2" / "b.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"n2 has no image files"):
        load_dataset({"name": "imagenet", "root": str(bad), "val_size": 2})
    with pytest.raises(DatasetError, match=r"--shift\[0\].*imagenet_a.*does not exist"):
        load_shift_sets([f"A=imagenet_a:{tmp_path / 'nope'}"], inet, flag="--shift")
    Image.new("RGB", (8, 8)).save(bad / "train" / "n2" / "b.jpg")
    with pytest.raises(DatasetError, match=r"not among the 10 classes.*n1, n2"):
        load_shift_sets([f"A=imagenet_a:{bad / 'train'}"], inet)
    (tmp_path / "c10c").mkdir()
    np.save(tmp_path / "c10c" / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match=rf"missing file {tmp_path / 'c10c' / 'labels.npy'}"):
        load_shift_sets([f"C=cifar10_c:{tmp_path / 'c10c'}"], load_dataset({"name": "cifar10", "root": str(sd / "cifar-10-batches-py"), "val_size": 8}))
    np.save(tmp_path / "c10c" / "labels.npy", np.zeros(10, np.uint8))
    with pytest.raises(DatasetError, match=r"have shape \(3, 32, 32\) but the model's data set mnist has \(1, 28, 28\)"):
        load_shift_sets([f"C=cifar10_c:{tmp_path / 'c10c'}"], load_dataset({"name": "mnist", "root": str(sd / "mnist"), "val_size": 5}))
    with pytest.raises(DatasetError, match=r"unknown shift data set 'imagenet_x'"):
        load_shift_sets(["X=imagenet_x:/tmp"], inet)


def test_cli_dataset_errors_exit_3(sd: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--out", tmp_path / "r", "data.name=imagenet", f"data.root={tmp_path / 'missing'}", "model.name=resnet20")
    assert code == 3 and "data.root" in err and str(tmp_path / "missing") in err
    assert not (tmp_path / "r").exists()
    code, _, err = run_cli("train", "--out", tmp_path / "m", "data.name=mnist", f"data.root={tmp_path}", "model.name=mlp")
    assert code == 3 and "missing MNIST file" in err and "idx3-ubyte" in err and str(tmp_path) in err


def test_imagenet_augment_on_in_memory_uint8_images(sd: Path) -> None:
    """``data.augment=imagenet`` also works on uint8 in-memory sets (CIFAR layout), seeded per sample."""
    b = load_dataset({"name": "cifar10", "root": str(sd / "cifar-10-batches-py"), "val_size": 8})
    aug = build_augment("imagenet", 32)
    a, y = b.train.get(np.arange(4), aug, np.arange(4))
    a2, _ = b.train.get(np.arange(4), aug, np.arange(4))
    plain, y2 = b.train.get(np.arange(4))
    assert a.shape == plain.shape == (4, 3, 32, 32) and torch.equal(a, a2) and not torch.equal(a, plain) and torch.equal(y, y2)
    digits = load_dataset({"name": "digits", "val_size": 150})
    with pytest.raises(DatasetError, match="needs images"):
        digits.train.get(np.arange(2), aug, np.arange(2))
