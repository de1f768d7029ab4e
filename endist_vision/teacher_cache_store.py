"""On-disk, memory-mapped cache of compact teacher records (``distill.teacher_mode=topk_cache``, issue 15).

The teachers run once over the *un-augmented* transfer inputs (like ``teacher_mode=cached``, [EnD2] App. A);
each image's member log-probabilities ``[M, K]`` (T = 1) are compressed into a fixed-size record by
:mod:`shared.teacher_cache` (top-k of the ensemble mean and the statistics the losses need) and written here,
one ``.npy`` file per record field and writer rank. Training reads the rows of each batch through
``np.load(mmap_mode="r", allow_pickle=False)``: the cache is never loaded whole, so its size is bounded by the
disk, not the host memory (ImageNet, K = 1000, k = 64: a few hundred bytes per image, see the run log line).

Layout of a cache directory ``CACHE``::

    CACHE/manifest.json            what the cache was built from (checked on every reuse) + its layout
    CACHE/<field>.<shard>.npy      rows [start, stop) of the transfer set for shard ``shard`` (one per rank)

The directory is built under ``.<CACHE name>.partial.tmp`` beside it and renamed into place only when every
shard and the manifest are written: an interrupted build never leaves a half-written cache under the final name.

The manifest's ``key`` (teachers: file sha256 per source; ``teacher_members``; data set name, size, image size and
a sha256 of its content in index order; K; k; the record format) must equal the one of the run that reuses it,
else :func:`open_cache` raises one :class:`ConfigError` line naming the cache and the first field that differs.
The record format (which fields, their dtypes) is chosen by :mod:`shared.teacher_cache`; this module stores any
dict of per-image arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from shared.io import sha256_file

from .errors import ConfigError

CACHE_FORMAT = "endist-vision-teacher-cache"
CACHE_VERSION = 1
MANIFEST = "manifest.json"
FLAG = "distill.teacher_cache"


# ---- what a cache is built from ----------------------------------------------------------------------------
def teacher_identity(sources: list[str | dict[str, Any]], flag: str = "distill.teacher") -> list[dict[str, Any]]:
    """One entry per teacher source (in ``distill.teacher`` order): the sha256 of the file its weights come
    from (a run directory's ``checkpoints/final.pt``, an external entry's ``weights``) and, for external
    entries, the model name and kwargs (they change the network the weights are loaded into)."""
    out = []
    for i, src in enumerate(sources):
        if isinstance(src, dict):
            path = Path(str(src.get("weights"))).expanduser()
            extra = {"model": src.get("model"), "kwargs": src.get("kwargs") or {}, "mean": src.get("mean"), "std": src.get("std")}
        else:
            path, extra = Path(src).expanduser() / "checkpoints" / "final.pt", {}
        if not path.is_file():
            raise ConfigError(f"{flag}[{i}]: {path} does not exist (needed to check the teacher cache)")
        out.append({"sha256": sha256_file(path), **extra})
    return out


def _hash_array(h: "hashlib._Hash", a: Any) -> None:
    arr = a.detach().cpu().contiguous().numpy() if isinstance(a, torch.Tensor) else np.ascontiguousarray(a)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))


def data_fingerprint(ds: Any, image_size: int | None) -> dict[str, Any]:
    """``{name, size, image_size, index_hash}`` of the transfer set: ``index_hash`` is a sha256 of its content in
    index order — the decoded arrays for in-memory sets, the relative file names for file-backed sets (ImageNet;
    the images themselves are not re-read) — and of the labels."""
    h = hashlib.sha256()
    if hasattr(ds, "files"):
        h.update(b"files\0" + b"\0".join(bytes(f) for f in ds.files))
    elif hasattr(ds, "x"):
        _hash_array(h, ds.x)
    _hash_array(h, ds.y)
    return {"name": str(ds.name), "size": int(len(ds)), "image_size": image_size, "index_hash": h.hexdigest()}


def cache_key(teachers: list[dict[str, Any]], teacher_members: int | None, data: dict[str, Any], num_classes: int,
              topk: int, record_format: Any) -> dict[str, Any]:
    """What a cache must have been built from to be reused (stored as ``manifest["key"]``)."""
    return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "record": record_format, "teachers": teachers,
            "teacher_members": teacher_members, "data": data, "num_classes": int(num_classes), "topk": int(topk)}


def key_difference(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """A short text naming the first field in which two cache keys differ (None when equal)."""
    if found == expected:
        return None
    for name in expected:
        a, b = found.get(name), expected[name]
        if a == b:
            continue
        if name == "teachers":
            if not isinstance(a, list) or len(a) != len(b):
                return f"other teachers ({len(a) if isinstance(a, list) else '?'} sources in the cache, {len(b)} in distill.teacher)"
            i = next(j for j in range(len(b)) if a[j] != b[j])
            what = "weights sha256" if a[i].get("sha256") != b[i].get("sha256") else "model/kwargs"
            return f"other teachers (distill.teacher[{i}] {what} differs: cache {str(a[i].get('sha256'))[:12]}, now {str(b[i].get('sha256'))[:12]})"
        if name == "data" and isinstance(a, dict):
            subs = [s for s in b if a.get(s) != b[s]]
            return (f"other data (data {', '.join(subs)} differ; {subs[0]}: cache {str(a.get(subs[0]))[:16]}, "
                    f"now {str(b[subs[0]])[:16]})")
        return f"other {name} (cache {str(a)[:40]}, now {str(b)[:40]})"
    return "other content"


# ---- writing -----------------------------------------------------------------------------------------------
def partial_dir(path: Path) -> Path:
    """The build directory of ``path`` (renamed to ``path`` once complete); the same name on every rank."""
    return path.parent / f".{path.name}.partial.tmp"


def shard_rows(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of the transfer set written by ``rank`` of ``world``."""
    return n * rank // world, n * (rank + 1) // world


def start_build(path: Path) -> Path:
    """Rank 0, before any shard is written: a fresh, empty build directory (a stale one of a killed build is
    removed)."""
    tmp = partial_dir(path)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except OSError as e:
        raise ConfigError(f"{FLAG} {path}: cannot create the cache directory ({e.strerror or e})") from e
    return tmp


def write_shard(path: Path, shard: int, rows: int, records: Iterable[Mapping[str, np.ndarray]]) -> None:
    """Write ``rows`` records (batches of per-image arrays, in order) as ``<field>.<shard>.npy`` memory-mapped
    files of the build directory; every field's file is created at its final size on the first batch."""
    tmp = partial_dir(path)
    outs: dict[str, np.memmap] = {}
    at = 0
    for rec in records:
        b = None
        for name, arr in rec.items():
            arr = np.asarray(arr)
            if name not in outs:
                outs[name] = np.lib.format.open_memmap(tmp / f"{name}.{shard}.npy", mode="w+", dtype=arr.dtype,
                                                       shape=(rows, *arr.shape[1:]))
            if b is None:
                b = len(arr)
            outs[name][at : at + b] = arr
        at += b or 0
    if at != rows:
        raise RuntimeError(f"teacher cache shard {shard}: wrote {at} rows, expected {rows}")
    for mm in outs.values():
        mm.flush()
    del outs


def finish_build(path: Path, key: Mapping[str, Any], num_rows: int, world: int, members: int) -> dict[str, Any]:
    """Rank 0, after every shard is written: describe the layout in ``manifest.json`` and rename the build
    directory to ``path``. Returns the manifest."""
    tmp = partial_dir(path)
    fields: dict[str, Any] = {}
    for f in sorted(tmp.glob("*.0.npy")):
        arr = np.load(f, mmap_mode="r", allow_pickle=False)
        fields[f.name[: -len(".0.npy")]] = {"dtype": arr.dtype.str, "shape": list(arr.shape[1:])}
    if num_rows and not fields:
        raise RuntimeError(f"teacher cache {path}: no shard was written")
    per_image = sum(np.dtype(v["dtype"]).itemsize * int(np.prod(v["shape"], dtype=np.int64)) for v in fields.values())
    manifest = {"key": dict(key), "rows": int(num_rows), "members": int(members), "fields": fields,
                "shards": [list(shard_rows(num_rows, r, world)) for r in range(world)], "bytes_per_image": int(per_image)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    try:
        os.rename(tmp, path)  # atomic: the cache appears complete or not at all
    except OSError as e:
        raise ConfigError(f"{FLAG} {path}: cannot move the finished cache into place ({e.strerror or e})") from e
    return manifest


# ---- reading -----------------------------------------------------------------------------------------------
def read_manifest(path: Path) -> dict[str, Any]:
    """``path/manifest.json`` parsed and checked for the fields this module needs (one-line ConfigError)."""
    mf = path / MANIFEST
    if not mf.is_file():
        raise ConfigError(f"{FLAG} {path}: exists but is not a teacher cache (no {MANIFEST}); choose another path")
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{FLAG} {path}: unreadable {MANIFEST} ({str(e).splitlines()[0][:120]})") from e
    ok = (isinstance(manifest, dict) and isinstance(manifest.get("key"), dict) and isinstance(manifest.get("fields"), dict)
          and isinstance(manifest.get("shards"), list) and isinstance(manifest.get("rows"), int)
          and manifest["key"].get("format") == CACHE_FORMAT)
    if not ok:
        raise ConfigError(f"{FLAG} {path}: {MANIFEST} is not an endist-vision teacher cache manifest")
    return manifest


def check_cache(path: Path, key: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of the cache at ``path`` if it was built from ``key``; else one ConfigError line naming the
    cache and what differs."""
    manifest = read_manifest(path)
    diff = key_difference(manifest["key"], key)
    if diff is not None:
        raise ConfigError(f"{FLAG} {path}: stale teacher cache, built for {diff}; delete it or set "
                          f"{FLAG} to another path")
    return manifest


@dataclass
class TeacherCache:
    """A finished cache, memory-mapped: :meth:`rows` reads only the requested images' records."""

    path: Path
    manifest: dict[str, Any]
    shards: list[tuple[int, int, dict[str, np.ndarray]]]  # (start, stop, {field: memmap})

    @classmethod
    def open(cls, path: str | os.PathLike, key: Mapping[str, Any]) -> "TeacherCache":
        """Check the manifest against ``key`` and memory-map every shard (``allow_pickle=False``)."""
        path = Path(path)
        manifest = check_cache(path, key)
        shards = []
        for i, (start, stop) in enumerate(manifest["shards"]):
            arrays = {}
            for name, spec in manifest["fields"].items():
                f = path / f"{name}.{i}.npy"
                try:
                    arr = np.load(f, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise ConfigError(f"{FLAG} {path}: missing or corrupt {f.name} ({str(e).splitlines()[0][:120]}); "
                                      "delete the cache to rebuild it") from e
                if arr.shape != (stop - start, *spec["shape"]) or arr.dtype.str != spec["dtype"]:
                    raise ConfigError(f"{FLAG} {path}: {f.name} holds {arr.dtype.str}{list(arr.shape)}, the manifest says "
                                      f"{spec['dtype']}{[stop - start, *spec['shape']]}; delete the cache to rebuild it")
                arrays[name] = arr
            shards.append((int(start), int(stop), arrays))
        return cls(path, manifest, shards)

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    @property
    def members(self) -> int:
        return int(self.manifest["members"])

    @property
    def bytes_per_image(self) -> int:
        return int(self.manifest["bytes_per_image"])

    def rows(self, idx: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """The records of images ``idx`` (any order, repeats allowed) as CPU tensors ``[len(idx), ...]``."""
        idx = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"teacher cache {self.path}: index out of range [0, {len(self)})")
        out: dict[str, np.ndarray] = {}
        for start, stop, arrays in self.shards:
            sel = (idx >= start) & (idx < stop)
            if not sel.any():
                continue
            for name, arr in arrays.items():
                if name not in out:
                    out[name] = np.empty((len(idx), *arr.shape[1:]), dtype=arr.dtype)
                out[name][sel] = arr[idx[sel] - start]  # fancy indexing on the memmap reads only these rows
        return {name: torch.from_numpy(a) for name, a in out.items()}
