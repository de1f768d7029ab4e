"""Files are untrusted (issue 11 item 2): a crafted CIFAR batch, a pickled ``.npy`` of a CIFAR-C set and a pickled
``uncertainty_map.npz`` run no code — they fail with one line naming the file and a marker file the payload would
create never appears — while CIFAR folders in the real format (Python 2 cPickle, protocol 2, as the stand-ins write
them) and Python 3 re-pickles of the same content still load."""

from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import standins
from vision_helpers import run_cli

from endist_vision.data import load_dataset, load_shift_sets
from endist_vision.errors import DatasetError


class _Payload:
    """Unpickling this calls ``os.system("touch MARKER")`` (what an attacker's file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


def _good_batch(n: int = 6) -> dict[bytes, object]:
    g = np.random.default_rng(1)
    return {b"data": g.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [int(v) for v in g.integers(0, 10, n)]}


def _cifar10_folder(root: Path, evil: dict[str, object] | None = None) -> Path:
    root.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / f).write_bytes(standins.py2_cpickle((evil or {}).get(f, _good_batch())))  # the real files' format
    return root


@pytest.mark.parametrize("where", ["top", "label", "data"])
def test_crafted_cifar_batch_runs_no_code(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "PWNED"
    batch = _good_batch()
    if where == "top":
        evil: object = _Payload(marker)
    elif where == "label":
        evil = {**batch, b"labels": [_Payload(marker)] + batch[b"labels"][1:]}
    else:
        evil = {**batch, b"data": _Payload(marker)}
    root = _cifar10_folder(tmp_path / "c10", {"data_batch_1": evil})
    assert not marker.exists()
    with pytest.raises(DatasetError) as e:
        load_dataset({"name": "cifar10", "root": str(root), "val_size": 4})
    msg = str(e.value)
    assert "data_batch_1" in msg and "refused global" in msg and "\n" not in msg
    assert not marker.exists()
    # through the CLI: exit 3, one line naming the file, no traceback, no run directory, no marker
    code, _, err = run_cli("train", "--config", "cifar10/vgg/individual", "--out", tmp_path / "run", f"data.root={root}")
    assert code == 3 and err.count("\n") == 1 and str(root / "data_batch_1") in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_payload_would_run_under_plain_pickle(tmp_path: Path) -> None:
    """The control: the crafted file does create the marker with ``pickle.load`` (so the tests above can fail)."""
    marker = tmp_path / "PWNED"
    root = _cifar10_folder(tmp_path / "c10", {"data_batch_1": {**_good_batch(), b"labels": [_Payload(marker)]}})
    with open(root / "data_batch_1", "rb") as f:
        pickle.load(f, encoding="bytes")
    assert marker.exists()


def test_other_numpy_objects_and_non_uint8_data_refused(tmp_path: Path) -> None:
    batch = _good_batch()
    cases = {
        "numpy scalar labels": {**batch, b"labels": list(np.arange(6, dtype=np.int64))},  # numpy._core.multiarray.scalar
        "python 3 protocol-2 bytes": None,  # bytes through _codecs.encode
        "float data": {**batch, b"data": batch[b"data"].astype(np.float32)},
        "not a dict": [batch[b"data"]],
    }
    for i, (what, obj) in enumerate(cases.items()):
        root = _cifar10_folder(tmp_path / f"c{i}")
        (root / "test_batch").write_bytes(pickle.dumps(batch, protocol=2) if obj is None else standins.py2_cpickle(obj))
        with pytest.raises(DatasetError, match="test_batch") as e:
            load_dataset({"name": "cifar10", "root": str(root), "val_size": 4})
        assert "\n" not in str(e.value), what


def test_real_format_standins_and_python3_pickles_load(tmp_path: Path) -> None:
    out = standins.write_cifar(tmp_path / "c10", per_class=2)
    raw = (out / "data_batch_1").read_bytes()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(raw)]
    # the format of the real files: protocol 2, Python 2 strings, numpy.core array reconstruction, nothing else
    assert raw[:2] == b"\x80\x02"
    assert {a for n, a in ops if n == "GLOBAL"} == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert not [n for n, _ in ops if "UNICODE" in n or "BYTES" in n]
    assert ("SHORT_BINSTRING", "data") in ops and ("SHORT_BINSTRING", "labels") in ops
    b = load_dataset({"name": "cifar10", "root": str(out), "val_size": 4})
    digits = standins.digits_split(2)
    assert len(b.train) + len(b.val) == len(digits["train"][1]) and len(b.test) == len(digits["test"][1])
    # test images = the digits upsampled x4 (nearest) in all three channels, in file order
    want = np.kron(digits["test"][0], np.ones((4, 4), np.uint8))
    assert np.array_equal(b.test.x[..., 0], want) and np.array_equal(b.test.x[..., 2], want)
    assert torch.equal(b.test.y, torch.from_numpy(digits["test"][1]))
    # the same content re-pickled by Python 3 (protocol 4, bytes keys) loads too
    root = _cifar10_folder(tmp_path / "py3")
    for f in root.iterdir():
        d = pickle.loads(f.read_bytes(), encoding="bytes")
        f.write_bytes(pickle.dumps(d, protocol=4))
    assert len(load_dataset({"name": "cifar10", "root": str(root), "val_size": 4}).test) == 6


def test_cifar100_standin_has_the_real_keys(tmp_path: Path) -> None:
    out = standins.write_cifar(tmp_path / "c100", per_class=2, hundred=True)
    d = pickle.loads((out / "train").read_bytes(), encoding="bytes")
    assert set(d) == {b"batch_label", b"data", b"filenames", b"fine_labels", b"coarse_labels"}
    assert d[b"coarse_labels"] == [v // 20 for v in d[b"fine_labels"]] and isinstance(d[b"filenames"][0], bytes)
    b = load_dataset({"name": "cifar100", "root": str(out), "val_size": 4})
    train_labels = torch.cat([b.train.y, b.val.y]).sort().values
    assert b.num_classes == 100 and torch.equal(train_labels, torch.from_numpy(np.sort(standins.digits_split(2)["train"][1])))


def test_pickled_npy_of_a_cifar_c_set_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    root = tmp_path / "c10c"
    root.mkdir()
    np.save(root / "labels.npy", np.array([_Payload(marker)] * 5, dtype=object), allow_pickle=True)
    np.save(root / "contrast.npy", np.zeros((5, 8, 8, 1), np.uint8))
    bundle = load_dataset({"name": "digits", "val_size": 150})
    with pytest.raises(DatasetError, match="labels.npy") as e:
        load_shift_sets([f"C=cifar10_c:{root}"], bundle)
    assert "\n" not in str(e.value) and not marker.exists()


def test_cifar_folder_with_zero_images_names_the_file(tmp_path: Path) -> None:
    """Was ``zero-size array to reduction operation`` with no file named (issue 11 item 9)."""
    empty = {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}
    root = _cifar10_folder(tmp_path / "c10", {f: empty for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]})
    code, _, err = run_cli("train", "--config", "cifar10/vgg/individual", "--out", tmp_path / "run", f"data.root={root}")
    assert code == 3 and err.count("\n") == 1 and str(root / "data_batch_1") in err and "holds no images" in err, err
    assert not (tmp_path / "run").exists()
    # images and labels of different lengths: one line too (was a ValueError from the dataset container)
    batch = _good_batch()
    root = _cifar10_folder(tmp_path / "c10b", {"test_batch": {**batch, b"labels": batch[b"labels"][:-1]}})
    with pytest.raises(DatasetError, match=r"test_batch: 6 images but 5 labels"):
        load_dataset({"name": "cifar10", "root": str(root), "val_size": 4})
