"""The on-disk teacher cache (``endist_vision.teacher_cache_store``): sharded writing, atomic appearance,
memory-mapped partial reads, manifest checks (issue 15, vision)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from endist_vision import teacher_cache_store as store
from endist_vision.data.base import ArrayDataset
from endist_vision.errors import ConfigError


def _key(**kw):
    base = dict(teachers=[{"sha256": "a" * 64}], teacher_members=None,
                data={"name": "d", "size": 10, "image_size": None, "index_hash": "b" * 64}, num_classes=7, topk=3,
                record_format="r1")
    base.update(kw)
    return store.cache_key(**base)


def _fields(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {"values": g.standard_normal((n, 3)).astype(np.float16), "index": g.integers(0, 7, (n, 3)).astype(np.int32),
            "scalar": g.standard_normal(n).astype(np.float32)}


def _build(path: Path, full: dict[str, np.ndarray], world: int, batch: int = 3) -> dict:
    n = len(full["scalar"])
    store.start_build(path)
    for r in range(world):  # what each rank writes in a torchrun build
        a, b = store.shard_rows(n, r, world)
        batches = ({k: v[i : min(i + batch, b)] for k, v in full.items()} for i in range(a, b, batch))
        store.write_shard(path, r, b - a, batches)
        assert not path.exists(), "the cache must not appear before it is complete"
    return store.finish_build(path, _key(), n, world, members=4)


@pytest.mark.parametrize("world", [1, 2])
def test_sharded_cache_round_trip_memory_mapped(tmp_path: Path, world: int) -> None:
    path, full = tmp_path / "cache", _fields(10)
    manifest = _build(path, full, world)
    assert not store.partial_dir(path).exists() and (path / "manifest.json").is_file()
    assert manifest["bytes_per_image"] == 3 * 2 + 3 * 4 + 4  # fp16 values, int32 indices, one fp32 scalar
    cache = store.TeacherCache.open(path, _key())
    assert len(cache) == 10 and cache.members == 4
    for _, _, arrays in cache.shards:
        assert all(isinstance(a, np.memmap) and a.mode == "r" for a in arrays.values())  # mapped, not read
    idx = torch.tensor([9, 0, 4, 4, 5, 1])  # any order, repeats, both shards
    rows = cache.rows(idx)
    for k, v in full.items():
        assert rows[k].dtype == torch.from_numpy(v).dtype
        np.testing.assert_array_equal(rows[k].numpy(), v[idx.numpy()])
    with pytest.raises(IndexError):
        cache.rows(np.array([10]))


def test_stale_or_corrupt_cache_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    _build(path, _fields(10), 1)
    other_teacher = _key(teachers=[{"sha256": "c" * 64}])
    with pytest.raises(ConfigError, match=r"stale teacher cache, built for other teachers \(distill.teacher\[0\] weights sha256"):
        store.TeacherCache.open(path, other_teacher)
    other_data = _key(data={"name": "d", "size": 10, "image_size": None, "index_hash": "e" * 64})
    with pytest.raises(ConfigError, match="built for other data \\(data index_hash differ") as e:
        store.TeacherCache.open(path, other_data)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    with pytest.raises(ConfigError, match="built for other topk"):
        store.TeacherCache.open(path, _key(topk=5))
    # a truncated shard is named, not a numpy traceback
    f = path / "values.0.npy"
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(ConfigError, match="values.0.npy"):
        store.TeacherCache.open(path, _key())
    (path / "manifest.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="not an endist-vision teacher cache manifest"):
        store.check_cache(path, _key())
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match="is not a teacher cache"):
        store.check_cache(tmp_path / "plain", _key())


def test_data_fingerprint_follows_content_and_order() -> None:
    x = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    fp = store.data_fingerprint(ArrayDataset(x, y, "s"), None)
    assert fp == store.data_fingerprint(ArrayDataset(x.clone(), y.clone(), "s"), None)
    perm = torch.tensor([1, 0, 2, 3, 4, 5])
    assert fp["index_hash"] != store.data_fingerprint(ArrayDataset(x[perm], y[perm], "s"), None)["index_hash"]
    x2 = x.clone()
    x2[5, 3] += 1e-3
    assert fp["index_hash"] != store.data_fingerprint(ArrayDataset(x2, y, "s"), None)["index_hash"]
    assert fp["size"] == 6 and fp["name"] == "s"
