"""Build a teacher cache: run the teachers once, teacher-forced, over fairseq splits (``endist-seq-cache``).

For each split the dataset (fairseq's own ``task.load_dataset``) is cut into chunks of ``--chunk-sentences``
consecutive dataset indices. Each chunk is scored in batches that depend on the chunk only (its sentences
sorted by length, ``--batch-size`` / ``--max-tokens``), compressed per target token by
:func:`shared.teacher_cache.build_record` and written atomically (temp file, then rename). So

- **sharded**: rank r of W (``--distributed-world-size``/``--distributed-rank``) writes the chunks N ≡ r
  (mod W); with ``--distributed-init-method`` the ranks meet in a ``torch.distributed`` barrier (gloo on
  the CPU, nccl on GPUs) and rank 0 joins the chunks; without it, the run that finds every chunk present
  joins them (rerun any rank once the others are done);
- **resumable**: a rerun keeps every finished chunk, removes the temp files of the ones a kill interrupted
  and redoes those; the result is byte-for-byte the result of an uninterrupted build, whatever the W;
- **checked**: ``build.json`` records the parameters first; a rerun with other teachers/k/grid/data is refused.

Fault injection for the tests: ``ENDIST_SEQ_CACHE_FAULT=N`` makes the process SIGKILL itself after N
finished chunks, while the next chunk's temp file is written but not yet renamed (off when unset).
"""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from endist_seq.teacher_cache.store import (
    ARRAYS,
    CACHE_KIND,
    CACHE_VERSION,
    TeacherCacheError,
    chunk_path,
    dataset_fingerprint,
    join_chunks,
    load_chunk,
    sha256_symbols,
)
from shared.teacher_cache import RECORD_VERSION, CacheLayout, build_record

logger = logging.getLogger("endist_seq.teacher_cache")

FAULT_ENV = "ENDIST_SEQ_CACHE_FAULT"
VALUE_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def build_parameters(task: Any, dataset: Any, subset: str, teacher_paths: Sequence[str], teacher_hashes: Sequence[str],
                     layout: CacheLayout, value_dtype: str, chunk_sentences: int) -> Dict[str, Any]:
    """The manifest's fields that define a build (everything but ``num_tokens`` and ``arrays``)."""
    return {
        "kind": CACHE_KIND,
        "version": CACHE_VERSION,
        "record_version": RECORD_VERSION,
        "subset": subset,
        "num_sentences": int(len(dataset)),
        "num_classes": int(layout.num_classes),
        "topk": int(layout.topk),
        "temperatures": list(layout.temperatures),
        "smoothing": float(layout.smoothing),
        "value_dtype": value_dtype,
        "teachers": [{"path": str(p), "sha256": h} for p, h in zip(teacher_paths, teacher_hashes)],
        "dictionaries": {"source": sha256_symbols(task.source_dictionary), "target": sha256_symbols(task.target_dictionary)},
        "data": dataset_fingerprint(dataset),
        "chunk_sentences": int(chunk_sentences),
    }


def _chunk_batches(dataset: Any, ids: Sequence[int], batch_size: int, max_tokens: Optional[int]) -> List[List[int]]:
    """Deterministic batches of one chunk: sentences by (target length, source length, index)."""
    src, tgt = dataset.src_sizes, dataset.tgt_sizes
    order = sorted(ids, key=lambda i: (int(tgt[i]), int(src[i]), i))
    batches: List[List[int]] = []
    cur: List[int] = []
    longest = 0
    for i in order:
        n = max(int(src[i]), int(tgt[i]))
        if cur and (len(cur) >= batch_size or (max_tokens and max(longest, n) * (len(cur) + 1) > max_tokens)):
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    return batches


@torch.no_grad()
def score_chunk(dataset: Any, ids: Sequence[int], teachers: Any, layout: CacheLayout, value_dtype: torch.dtype,
                pad: int, device: torch.device, batch_size: int, max_tokens: Optional[int]) -> Dict[str, torch.Tensor]:
    """The cached arrays of the sentences ``ids`` (in that order) and their token counts ``lengths``."""
    per_sentence: Dict[int, Dict[str, torch.Tensor]] = {}
    for batch_ids in _chunk_batches(dataset, ids, batch_size, max_tokens):
        sample = dataset.collater([dataset[i] for i in batch_ids])
        net_input = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in sample["net_input"].items()}
        target = sample["target"].to(device)
        mask = target.ne(pad)
        lp = teachers.log_probs(net_input, mask)  # [N, M, V], rows in target[mask] order
        rec = build_record(lp, layout.topk, layout.temperatures, value_dtype=value_dtype, smoothing=layout.smoothing)
        tokens = target[mask]
        tml = lp.gather(-1, tokens.view(-1, 1, 1).expand(-1, lp.shape[1], 1)).mean(1).squeeze(-1)
        fields = {
            "index": rec.index.to(torch.int32), "log_mean": rec.log_mean, "mean_log": rec.mean_log,
            "grid": rec.grid.float(), "target": tokens.to(torch.int32), "target_mean_log": tml.float(),
        }
        lengths = mask.sum(-1).tolist()
        start = 0
        for sid, n in zip(sample["id"].tolist(), lengths):
            per_sentence[int(sid)] = {k: v[start : start + n].cpu() for k, v in fields.items()}
            start += n
    out = {k: torch.cat([per_sentence[i][k] for i in ids]) for k in ARRAYS}
    out["lengths"] = torch.tensor([len(per_sentence[i]["target"]) for i in ids], dtype=torch.int64)
    return out


def write_chunk(path: Path, data: Dict[str, torch.Tensor], rank: int, fault: Dict[str, int]) -> None:
    """Atomic write (temp file + rename) with the optional fault hook between the two."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.r{rank}.tmp"
    torch.save(data, tmp)
    if fault.get("after") is not None and fault["done"] >= fault["after"]:
        os.kill(os.getpid(), signal.SIGKILL)  # a kill mid-write: the temp file stays, the chunk does not exist
    os.replace(tmp, path)
    fault["done"] += 1


def _fault_from_env() -> Dict[str, Any]:
    raw = os.environ.get(FAULT_ENV, "").strip()
    return {"after": int(raw) if raw else None, "done": 0}


def _chunk_ok(path: Path, dataset: Any, ids: Sequence[int]) -> bool:
    data = load_chunk(path) if path.exists() else None
    return data is not None and len(data["lengths"]) == len(ids)


def build_subset(task: Any, subset: str, teachers: Any, teacher_paths: Sequence[str], teacher_hashes: Sequence[str],
                 out: Path, layout: CacheLayout, value_dtype: str, chunk_sentences: int, batch_size: int,
                 max_tokens: Optional[int], device: torch.device, rank: int, world_size: int,
                 barrier: Optional[Any]) -> Optional[Dict[str, Any]]:
    """Write this rank's chunks of ``subset``; join them when this rank is the one that can. Returns the manifest
    when this call completed (or found) the cache, else None."""
    from shared.io import atomic_write_json
    import json

    dataset = task.dataset(subset)
    params = build_parameters(task, dataset, subset, teacher_paths, teacher_hashes, layout, value_dtype, chunk_sentences)
    subset_dir = out / subset
    manifest_path = subset_dir / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in params} != params:
            raise TeacherCacheError(f"--out {subset_dir}: holds a finished teacher cache built with other parameters "
                                    f"({_first_diff(old, params)}); choose another --out or delete it")
        logger.info("%s: complete already (%s)", subset, manifest_path)
        return old
    build_json = subset_dir / "build.json"
    if build_json.exists():
        old = json.loads(build_json.read_text(encoding="utf-8"))
        if old != params:
            raise TeacherCacheError(f"--out {subset_dir}: an interrupted build with other parameters is there "
                                    f"({_first_diff(old, params)}); choose another --out or delete it")
    else:
        atomic_write_json(build_json, params)
    n = len(dataset)
    num_chunks = max(1, math.ceil(n / chunk_sentences)) if n else 0
    pad = task.target_dictionary.pad()
    fault = _fault_from_env()
    torch_dtype = VALUE_TORCH_DTYPES[value_dtype]
    mine = [c for c in range(num_chunks) if c % world_size == rank]
    for c in mine:  # the temp files of this rank's chunks are partial chunks of a killed run
        for p in (subset_dir / "chunks").glob(f".{chunk_path(subset_dir, c).name}.*.tmp"):
            p.unlink(missing_ok=True)
    for c in mine:
        ids = list(range(c * chunk_sentences, min(n, (c + 1) * chunk_sentences)))
        path = chunk_path(subset_dir, c)
        if _chunk_ok(path, dataset, ids):
            continue
        data = score_chunk(dataset, ids, teachers, layout, torch_dtype, pad, device, batch_size, max_tokens)
        write_chunk(path, data, rank, fault)
        logger.info("%s: chunk %d/%d written (rank %d of %d)", subset, c + 1, num_chunks, rank, world_size)
    if barrier is not None:
        barrier()
        result = join_chunks(subset_dir, num_chunks, params) if rank == 0 else None
        barrier()
        return result
    if all(_chunk_ok(chunk_path(subset_dir, c), dataset, range(c * chunk_sentences, min(n, (c + 1) * chunk_sentences)))
           for c in range(num_chunks)):
        return join_chunks(subset_dir, num_chunks, params)
    logger.info("%s: rank %d done; other ranks' chunks are missing: rerun once they finish to join", subset, rank)
    return None


def _first_diff(old: Dict[str, Any], new: Dict[str, Any]) -> str:
    for key in new:
        if old.get(key) != new[key]:
            return f"{key}: {json_short(old.get(key))} there, {json_short(new[key])} now"
    return "unknown difference"


def json_short(value: Any, limit: int = 120) -> str:
    import json

    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
