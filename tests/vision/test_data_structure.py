"""Data by role (issue 12 item 4): one ``Dataset`` protocol for both storages, the data-set and shift registries
refuse a taken name (they silently replaced the loader before), one image decoding path for the in-memory and
the lazily decoded sets, and the stand-in writers live outside the installed package."""

from __future__ import annotations

import ast
import importlib.util
import typing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from endist_vision.data import (ArrayDataset, DataBundle, Dataset, FileDataset, Source, available_datasets, available_shift_sets,
                                get_loader, load_dataset, register_dataset, register_shift)
from endist_vision.data.base import concat
from endist_vision.errors import DatasetError

DATA_DIR = Path(__file__).resolve().parents[2] / "endist_vision" / "data"


def _other_loader(root: str | None, *, flag: str = "data.root", image_size: int | None = None) -> Source:
    raise AssertionError("must never be registered")


def test_taken_dataset_and_shift_names_raise_and_keep_the_original() -> None:
    before, loader = available_datasets(), get_loader("digits", "data.name")
    with pytest.raises(ValueError, match=r"data set 'digits' is already registered by endist_vision\.data\.embedded"):
        register_dataset("digits")(_other_loader)
    assert get_loader("digits", "data.name") is loader and available_datasets() == before
    assert len(load_dataset({"name": "digits", "val_size": 150}).test) == 400  # still the real loader
    shifts = available_shift_sets()
    with pytest.raises(ValueError, match=r"shift set 'imagenet_a' is already registered by endist_vision\.data\.shift"):
        register_shift("imagenet_a")(_other_loader)
    assert available_shift_sets() == shifts and {"imagenet_a", "imagenet_c", "cifar10_c"} <= set(shifts)
    with pytest.raises(DatasetError, match=r"data\.name: unknown dataset 'nope'; available: .*digits"):
        get_loader("nope", "data.name")


def _images(folder: Path, names: list[str], size: tuple[int, int] = (20, 14)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        arr = np.full((size[1], size[0], 3), 20 * i, np.uint8)
        arr[0, 0] = (255, 0, 0)
        fmt = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG"}[Path(n).suffix.lower()]
        Image.fromarray(arr).save(folder / n, format=fmt)


def test_both_storages_are_datasets_and_share_one_decoding_path(tmp_path: Path) -> None:
    # the same tree as an ImageFolder OOD set (decoded up front) and as ImageNet (decoded per batch)
    for split in ("train", "val"):
        _images(tmp_path / "inet" / split / "n01", ["a.JPEG", "b.PnG", "c.jpg"])
    (tmp_path / "inet" / "train" / "n01" / "readme.txt").write_text("not an image")
    b = load_dataset({"name": "imagenet", "root": str(tmp_path / "inet"), "val_size": 1, "image_size": 16,
                      "ood": [{"name": "imagefolder", "root": str(tmp_path / "inet" / "val"), "label": "F"}]})
    assert isinstance(b.train, FileDataset) and isinstance(b.ood["F"], ArrayDataset)
    for ds in (b.train, b.val, b.test, b.ood["F"]):
        assert isinstance(ds, Dataset), type(ds)
    assert len(b.test) == 3 and len(b.ood["F"]) == 3  # .JPEG / .PnG / .jpg count, .txt does not, in both storages
    hints = typing.get_type_hints(DataBundle)
    assert hints["train"] is Dataset and hints["test"] is Dataset
    # an undecodable file: the same one-line error, naming flag and file, from both storages
    (tmp_path / "inet" / "val" / "n01" / "c.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DatasetError, match=r"data\.ood\[0\]\.root: cannot read image .*c\.jpg"):
        load_dataset({"name": "digits", "val_size": 150, "ood": [{"name": "imagefolder", "root": str(tmp_path / "inet" / "val")}]})
    with pytest.raises(DatasetError, match=r"data\.root: cannot read image .*c\.jpg"):
        b.test.get(np.arange(3))
    # concat is a Dataset method; mixing storages is one clear error
    assert len(concat(b.train, b.train, "t")) == 2 * len(b.train)
    with pytest.raises(DatasetError, match="different storage"):
        concat(b.ood["F"], b.train, "mixed")


def test_standins_are_not_in_the_installed_package() -> None:
    assert importlib.util.find_spec("endist_vision.data.standins") is None
    assert (DATA_DIR.parents[1] / "scripts" / "lib" / "standins.py").is_file()


def test_no_function_in_data_longer_than_60_lines() -> None:
    long = []
    for f in sorted(DATA_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{f.name}:{node.lineno} {node.name}")
    assert not long, long
