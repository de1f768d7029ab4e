"""``distill.teacher_mode=topk_cache``: plan, build and read the on-disk teacher cache of a training run.

* :func:`check_supported` — which methods can train from the cache: those whose loss needs only the ensemble
  mean and per-image statistics (``end``, ``end2``, ``proxy_end2``: ``Method.uses_topk_cache``). Perturbation
  methods need the teacher on the perturbed batch (``distill.teacher_mode=online``); methods that need every
  member's outputs (Hydra heads, BatchEnsemble/LatentBE, AE-KD weights) keep ``cached``/``online``.
* :func:`plan_cache` — where the cache lives (``distill.teacher_cache``, default ``RUN/teacher_cache``) and what it
  must have been built from (:func:`endist_vision.teacher_cache_store.cache_key`); an existing cache is checked
  here, before the teachers are loaded (a reused cache means no teacher is loaded at all).
* :func:`build_cache` — the teachers once over the **un-augmented** transfer inputs (the eval transform: ImageNet's
  resize + centre crop), each rank one shard, records compressed by :mod:`shared.teacher_cache`.
* :func:`batch_record` — the records of a batch's image indices, on the device, as the losses take them.

A cache holds outputs for the un-augmented views only: with ``data.augment`` the student sees a random crop/flip
of an image and is trained towards the teachers' prediction on its clean view (as ``cached``, [EnD2] App. A),
not on the same crop (as ``online``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from . import teacher_cache_store as store
from .distributed import DistInfo, barrier
from .errors import ConfigError
from .teacher import teacher_sources
from shared.teacher_cache import DEFAULT_TEMPERATURES, RECORD_VERSION, CacheLayout, TeacherCacheRecord, build_record

SUPPORTED_TEXT = "end, end2, proxy_end2"
RECORD_FORMAT = f"shared.teacher_cache/{RECORD_VERSION}"


class CachedTeacherBatch(NamedTuple):
    """What a method's ``loss`` gets in place of ``teacher_log_probs [B, M, K]`` under ``topk_cache``: the batch's
    :class:`shared.teacher_cache.TeacherCacheRecord` and the cache's :class:`shared.teacher_cache.CacheLayout`
    (K, k, temperature grid), the arguments of ``shared.teacher_cache.cached_*_loss``."""

    record: TeacherCacheRecord
    layout: CacheLayout


def temperature_grid(method_cls: Any, method_config: Any) -> tuple[float, ...]:
    """The cache's temperature grid: :data:`shared.teacher_cache.DEFAULT_TEMPERATURES` plus the temperatures the
    method uses (``Method.cache_temperatures``: its fixed T, or EnD²'s annealing end points), where the rebuilt
    targets are exact (in between, interpolated; see :mod:`shared.teacher_cache`)."""
    return tuple(sorted({*DEFAULT_TEMPERATURES, *(float(t) for t in method_cls.cache_temperatures(method_config))}))


def check_supported(method_cls: Any, method_config: Any) -> None:
    """One ConfigError line when ``method_cls`` (with its parsed ``method_args``) cannot train from the cache."""
    name = method_cls.name
    pert = getattr(method_config, "perturbation", "none")
    if method_cls.needs_online_teacher or pert != "none":
        raise ConfigError(f"distill.teacher_mode=topk_cache: method {name} with method_args.perturbation={pert} needs the "
                          "teacher online on the perturbed batch (a cache holds the un-augmented views only); "
                          "use distill.teacher_mode=online")
    if not getattr(method_cls, "uses_topk_cache", False):
        raise ConfigError(f"distill.teacher_mode=topk_cache: method {name} needs every teacher member's outputs, which the "
                          f"top-k cache does not hold (it serves {SUPPORTED_TEXT}); use distill.teacher_mode=cached or online")


@dataclass
class CachePlan:
    """Where the cache is and what it must hold; ``manifest`` is None until it exists (then: to be built)."""

    path: Path
    key: dict[str, Any]
    layout: CacheLayout
    manifest: dict[str, Any] | None = None


def plan_cache(distill: dict[str, Any], data: Any, transfer: Any, run_dir: Path, temperatures: tuple[float, ...]) -> CachePlan:
    """The cache of this run: path, expected key (teacher file hashes, data fingerprint, K, k), and the manifest of
    a matching existing cache (a stale one is one ConfigError line)."""
    if not distill.get("teacher"):
        raise ConfigError("distill.teacher is required for this method (a finished ensemble/individual run directory)")
    path = Path(distill.get("teacher_cache") or Path(run_dir) / "teacher_cache").expanduser()
    k = min(int(distill.get("topk", 64)), int(data.num_classes))  # k >= K keeps every class (exact)
    members = distill.get("teacher_members")
    record_format = {"record": RECORD_FORMAT, "temperatures": list(temperatures), "value_dtype": "float32"}
    key = store.cache_key(store.teacher_identity(teacher_sources(distill["teacher"])), int(members) if members else None,
                          store.data_fingerprint(transfer, data.image_size), data.num_classes, k, record_format)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{store.FLAG} {path}: is a regular file, not a cache directory")
    manifest = store.check_cache(path, key) if path.exists() else None
    return CachePlan(path, key, CacheLayout(int(data.num_classes), k, tuple(temperatures)), manifest)


def build_cache(plan: CachePlan, teacher: torch.nn.Module, transfer: Any, device: torch.device, info: DistInfo,
                batch_size: int = 512, num_workers: int = 0) -> None:
    """Run ``teacher`` once over the un-augmented ``transfer`` set and write the cache (rank r: shard r)."""
    from shared.progress import progress

    from .data.batches import iterate_batches

    n, world, rank = len(transfer), info.world_size, info.rank
    if info.is_main:
        store.start_build(plan.path)
    barrier(info)
    start, stop = store.shard_rows(n, rank, world)
    part = transfer.subset(np.arange(start, stop))
    pin = device.type == "cuda"

    def records():
        with torch.no_grad():
            batches = iterate_batches(part, batch_size, num_workers, pin_memory=pin)
            total = -(-len(part) // batch_size)
            for x, _ in progress(batches, desc=f"teacher cache (rank {rank})", total=total, unit="batch"):
                lp = torch.log_softmax(teacher(x.to(device, non_blocking=True)).float(), dim=-1)
                rec = build_record(lp, plan.layout.topk, plan.layout.temperatures, value_dtype=torch.float32)
                yield {name: v.cpu().numpy() for name, v in rec._asdict().items()}

    store.write_shard(plan.path, rank, stop - start, records())
    barrier(info)
    if info.is_main:
        plan.manifest = store.finish_build(plan.path, plan.key, n, world, int(teacher.num_members))
    barrier(info)


def open_cache(plan: CachePlan, built: bool, info: DistInfo) -> store.TeacherCache:
    """Memory-map the (checked) cache and, on rank 0, print its size to the run log (stderr)."""
    cache = store.TeacherCache.open(plan.path, plan.key)
    if info.is_main:
        n, b, key = len(cache), cache.bytes_per_image, cache.manifest["key"]
        print(f"teacher cache: {'built' if built else 'reused'} {plan.path}: {n} images x {b} bytes/image = "
              f"{n * b / 2**20:.1f} MiB (top-{key['topk']} of K={key['num_classes']}, M={cache.members}; teacher outputs "
              "of the un-augmented inputs: augmented views get their clean image's targets)", file=sys.stderr)
    return cache


def batch_record(cache: store.TeacherCache, idx: torch.Tensor, device: torch.device) -> Any:
    """The teacher record of the images ``idx`` (read from the memory map), on ``device``."""
    rows = {k: v.to(device, non_blocking=True) for k, v in cache.rows(idx).items()}
    return CachedTeacherBatch(TeacherCacheRecord(**rows), plan_layout(cache))


def plan_layout(cache: store.TeacherCache) -> CacheLayout:
    """The :class:`CacheLayout` a cache was built with (from its manifest key)."""
    key = cache.manifest["key"]
    return CacheLayout(int(key["num_classes"]), int(key["topk"]), tuple(key["record"]["temperatures"]))
