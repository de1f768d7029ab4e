"""On-disk teacher cache of one fairseq split: chunk files while building, memory-mapped arrays when done.

Layout of ``CACHE_DIR/<subset>/`` (``endist-seq-cache`` writes it, ``--teacher-cache CACHE_DIR`` reads it)::

    build.json              the build's parameters (written first; a resumed build must match them)
    chunks/chunk-NNNNNN.pt  sentences [N·S, (N+1)·S) of the split (S = --chunk-sentences), torch tensors,
                            read weights-only; rank r of W writes the chunks N ≡ r (mod W); each file is
                            written to a temp file and renamed, so a killed build leaves whole chunks only
    offsets.npy             int64 [S+1]: sentence i's tokens are rows offsets[i]:offsets[i+1]
    index.npy               int32 [tokens, k]          \
    log_mean.npy            value dtype [tokens, k+1]   |  shared.teacher_cache.TeacherCacheRecord, one row
    mean_log.npy            value dtype [tokens, k+1]   |  per target token (EOS included) in target order
    grid.npy                float32 [tokens, G, 12]    /
    target.npy              int32 [tokens]: the target token ids (checked against every batch)
    target_mean_log.npy     float32 [tokens]: (1/M) Σ_m ln p_m(y_t) (the logged teacher NLL)
    manifest.json           written last (its presence = a complete cache): see :data:`MANIFEST_KEYS`

Rows are fairseq's dataset indices (``sample["id"]``), tokens the non-padding target positions of
the teacher-forced batch, so a training batch gathers its rows without running any teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from endist_seq.errors import EndistUserError
from shared.io import atomic_write_json, sha256_file
from shared.teacher_cache import CacheLayout, TeacherCacheRecord

#: ``manifest.json`` ``kind`` and format version
CACHE_KIND = "endist-seq-teacher-cache"
CACHE_VERSION = 1
#: per-token arrays and their dtypes (``log_mean``/``mean_log``: the manifest's ``value_dtype``)
ARRAYS = ("index", "log_mean", "mean_log", "grid", "target", "target_mean_log")
MANIFEST_KEYS = (
    "kind", "version", "record_version", "subset", "num_sentences", "num_tokens", "num_classes", "topk",
    "temperatures", "smoothing", "value_dtype", "teachers", "dictionaries", "data", "chunk_sentences", "arrays",
)
VALUE_DTYPES = {"fp32": np.float32, "fp16": np.float16}
_CHUNK_RE = re.compile(r"^chunk-(\d{6})\.pt$")


class TeacherCacheError(EndistUserError):
    """A teacher cache is missing, incomplete, stale or does not match the training run (one line)."""


def sha256_symbols(dictionary: Any) -> str:
    """Hash of a fairseq dictionary's symbols, in order (what the model's embedding rows mean)."""
    return hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()


def sha256_array(array: Any) -> str:
    a = np.ascontiguousarray(np.asarray(array, dtype=np.int64))
    return hashlib.sha256(a.tobytes()).hexdigest()


def dataset_fingerprint(dataset: Any) -> Dict[str, Any]:
    """Size and the source/target length arrays' hash of a fairseq LanguagePairDataset."""
    tgt_sizes = getattr(dataset, "tgt_sizes", None)
    return {
        "num_sentences": int(len(dataset)),
        "src_sizes_sha256": sha256_array(dataset.src_sizes),
        "tgt_sizes_sha256": sha256_array(tgt_sizes if tgt_sizes is not None else []),
    }


def chunk_path(subset_dir: Path, chunk: int) -> Path:
    return subset_dir / "chunks" / f"chunk-{chunk:06d}.pt"


def load_chunk(path: Path) -> Optional[Dict[str, torch.Tensor]]:
    """A finished chunk's tensors (weights-only, memory-mapped: only what is used is read), or None when
    unreadable (a truncated file has no zip directory: redo it)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a truncated/corrupt chunk is redone
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), torch.Tensor) for k in (*ARRAYS, "lengths")):
        return None
    return data


def join_chunks(subset_dir: Path, num_chunks: int, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Concatenate the chunks into the memory-mappable arrays, then write ``manifest.json`` (last)."""
    import shutil

    lengths: List[np.ndarray] = []
    for c in range(num_chunks):
        data = load_chunk(chunk_path(subset_dir, c))
        if data is None:
            raise TeacherCacheError(f"teacher cache {subset_dir}: chunk {c} is missing or unreadable; rerun the build")
        lengths.append(data["lengths"].numpy())
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    total = int(offsets[-1])
    first = load_chunk(chunk_path(subset_dir, 0)) if num_chunks else None
    arrays_meta: Dict[str, Any] = {}
    for name in ARRAYS:
        proto = first[name].numpy() if first is not None else np.zeros((0,), dtype=np.float32)
        shape = (total, *proto.shape[1:])
        final = subset_dir / f"{name}.npy"
        tmp = subset_dir / f".{name}.npy.{os.getpid()}.tmp"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=proto.dtype, shape=shape)
        row = 0
        for c in range(num_chunks):
            part = load_chunk(chunk_path(subset_dir, c))[name].numpy()  # type: ignore[index]
            out[row : row + len(part)] = part
            row += len(part)
        out.flush()
        del out
        os.replace(tmp, final)
        arrays_meta[name] = {"dtype": str(proto.dtype), "shape": list(shape)}
    tmp = subset_dir / f".offsets.npy.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, offsets)
    os.replace(tmp, subset_dir / "offsets.npy")
    manifest = dict(manifest, num_tokens=total, arrays=arrays_meta)
    atomic_write_json(subset_dir / "manifest.json", manifest)
    shutil.rmtree(subset_dir / "chunks", ignore_errors=True)
    (subset_dir / "build.json").unlink(missing_ok=True)
    return manifest


class SubsetCache:
    """A complete cache of one split, memory-mapped (nothing is read until a batch asks for its rows)."""

    def __init__(self, subset_dir: Path, flag: str = "--teacher-cache") -> None:
        self.dir = Path(subset_dir)
        self.flag = flag
        manifest_path = self.dir / "manifest.json"
        if not manifest_path.is_file():
            hint = " (building was interrupted: rerun endist-seq-cache to finish it)" if (self.dir / "build.json").exists() else ""
            raise TeacherCacheError(f"{flag} {self.dir}: not a complete teacher cache, no manifest.json{hint}")
        try:
            self.manifest: Dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise TeacherCacheError(f"{flag} {manifest_path}: unreadable manifest: {err}") from err
        missing = [k for k in MANIFEST_KEYS if k not in self.manifest]
        if self.manifest.get("kind") != CACHE_KIND or missing:
            raise TeacherCacheError(f"{flag} {manifest_path}: not an endist teacher cache manifest (missing {', '.join(missing) or 'kind'})")
        if self.manifest["version"] != CACHE_VERSION:
            raise TeacherCacheError(
                f"{flag} {manifest_path}: cache format version {self.manifest['version']}, this endist reads {CACHE_VERSION}: rebuild it"
            )
        self.layout = CacheLayout(
            int(self.manifest["num_classes"]), int(self.manifest["topk"]),
            tuple(float(t) for t in self.manifest["temperatures"]), float(self.manifest["smoothing"]),
        )
        try:
            self.offsets = np.load(self.dir / "offsets.npy", mmap_mode="r", allow_pickle=False)
            self.arrays = {n: np.load(self.dir / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in ARRAYS}
        except (OSError, ValueError) as err:
            raise TeacherCacheError(f"{flag} {self.dir}: unreadable cache array: {err}") from err
        n, tokens = int(self.manifest["num_sentences"]), int(self.manifest["num_tokens"])
        if len(self.offsets) != n + 1 or int(self.offsets[-1]) != tokens or any(len(a) != tokens for a in self.arrays.values()):
            raise TeacherCacheError(f"{flag} {self.dir}: arrays do not match the manifest ({n} sentences, {tokens} tokens)")

    def _refuse(self, what: str) -> None:
        raise TeacherCacheError(f"{self.flag} {self.dir}: stale or mismatched teacher cache: {what}")

    def check_dataset(self, dataset: Any, source_dictionary: Any, target_dictionary: Any) -> None:
        """Refuse (one line) a cache of other data or other dictionaries than the training run's split."""
        m = self.manifest
        got = dataset_fingerprint(dataset)
        if got["num_sentences"] != m["data"]["num_sentences"]:
            self._refuse(f"{m['data']['num_sentences']} sentences cached, the split has {got['num_sentences']}")
        if got != m["data"]:
            self._refuse("the split's sentence lengths differ from the cached ones (other data)")
        for side, d in (("source", source_dictionary), ("target", target_dictionary)):
            if sha256_symbols(d) != m["dictionaries"][side]:
                self._refuse(f"the {side} dictionary differs from the one the cache was built with")
        if len(target_dictionary) != self.layout.num_classes:
            self._refuse(f"cached vocabulary size {self.layout.num_classes}, target dictionary has {len(target_dictionary)}")

    def check_teachers(self, paths: Sequence[str]) -> None:
        """Refuse a cache of other teachers than ``paths`` (compared by sha256, in order)."""
        cached = [t["sha256"] for t in self.manifest["teachers"]]
        now = [sha256_file(p) for p in paths]
        if cached != now:
            self._refuse(
                f"built from {len(cached)} teachers ({', '.join(t['path'] for t in self.manifest['teachers'])}) whose "
                f"sha256 differ from --ensemble-paths' {len(now)}"
            )

    @property
    def num_sentences(self) -> int:
        return int(self.manifest["num_sentences"])

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        """Token rows of the sentences ``ids``, concatenated in that order."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_sentences):
            raise TeacherCacheError(
                f"{self.flag} {self.dir}: sentence id {int(ids.max())} is beyond the cache's {self.num_sentences} sentences"
            )
        starts, ends = self.offsets[ids], self.offsets[ids + 1]
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends)])

    def batch(self, ids: Sequence[int], target: torch.Tensor, mask: torch.Tensor) -> Optional[Dict[str, torch.Tensor]]:
        """The cached record of a batch's non-padding target tokens (``target[mask]`` order), or None when the
        batch's targets are not the cached ones (other data, other subset)."""
        ids_np = np.asarray(torch.as_tensor(ids).cpu(), dtype=np.int64)
        if len(ids_np) and (ids_np.min() < 0 or ids_np.max() >= self.num_sentences):
            return None
        lengths = torch.from_numpy(np.asarray(self.offsets[ids_np + 1] - self.offsets[ids_np]))
        if not torch.equal(lengths, mask.sum(-1).cpu().to(lengths.dtype)):
            return None
        rows = self.rows(ids_np)
        cached_target = torch.from_numpy(np.asarray(self.arrays["target"][rows])).long()
        if not torch.equal(cached_target, target[mask].cpu().long()):
            return None
        device = target.device
        out = {n: torch.from_numpy(np.asarray(self.arrays[n][rows])).to(device) for n in ARRAYS}
        return out

    def record(self, batch: Dict[str, torch.Tensor]) -> TeacherCacheRecord:
        return TeacherCacheRecord(batch["index"].long(), batch["log_mean"], batch["mean_log"], batch["grid"])
