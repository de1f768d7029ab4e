"""``--teacher-cache`` inside ``fairseq-train``: check a cache against the run, attach a batch's cached rows.

Checks (each failure is one :class:`~endist_seq.teacher_cache.store.TeacherCacheError` line naming the
cache directory and the mismatch):

- when the criterion is built: the train split's cache exists and is complete; its vocabulary size and
  dictionaries are the task's; ``--topk-loss K`` (Dirichlet criterions) is 0 or the cache's k; EnD²'s
  ``--central-smoothing`` is 0 or the γ the cache was built with; the temperatures of the schedule
  (``--init-temp``, ``--final-temp``) and validation's T = 1 lie in the cache's grid; with
  ``--ensemble-paths`` given too, the teachers' sha256 are the cached ones;
- on a split's first batch: its sentence count and length arrays are the cached ones;
- on every batch: the cached target tokens of the batch's ``sample["id"]`` are the batch's targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from endist_seq.errors import config_value
from endist_seq.teacher_cache.store import SubsetCache, TeacherCacheError, sha256_symbols
from endist_seq.teachers import EnsembleBatch

FLAG = "--teacher-cache"


def _train_subset(task: Any) -> str:
    value = config_value(task.cfg, "train_subset", "train")
    return value if isinstance(value, str) and value and not value.startswith("${") else "train"


def open_subset_cache(task: Any, split: str) -> SubsetCache:
    """The cache of ``split`` (opened once per task; checked against the split's dataset once it is loaded)."""
    cache: Optional[SubsetCache] = task.teacher_caches.get(split)
    if cache is None:
        root = Path(task.cfg.teacher_cache)
        if not root.is_dir():
            raise TeacherCacheError(f"{FLAG} {root}: not a directory")
        subset_dir = root / split
        if not subset_dir.is_dir():
            raise TeacherCacheError(
                f"{FLAG} {root}: no cache of split '{split}' ({subset_dir} does not exist; build it with "
                f"endist-seq-cache ... --subset {split})"
            )
        cache = SubsetCache(subset_dir, FLAG)
        cache.dataset_checked = False  # type: ignore[attr-defined]
        task.teacher_caches[split] = cache
    dataset = getattr(task, "datasets", {}).get(split)
    if dataset is not None and not cache.dataset_checked:  # type: ignore[attr-defined]
        cache.check_dataset(dataset, task.source_dictionary, task.target_dictionary)
        cache.dataset_checked = True  # type: ignore[attr-defined]
    return cache


def check_cache_for_criterion(task: Any, criterion: Any, teacher_paths: Sequence[str]) -> SubsetCache:
    """Refuse a train-split cache that the criterion's or task's flags contradict (module docstring)."""
    cache = open_subset_cache(task, _train_subset(task))
    lay = cache.layout
    refuse = cache._refuse
    if lay.num_classes != len(task.target_dictionary):
        refuse(f"cached vocabulary size {lay.num_classes}, target dictionary has {len(task.target_dictionary)}")
    for side, d in (("source", task.source_dictionary), ("target", task.target_dictionary)):
        if sha256_symbols(d) != cache.manifest["dictionaries"][side]:
            refuse(f"the {side} dictionary differs from the one the cache was built with")
    topk = int(getattr(criterion, "topk", 0) or 0)
    if topk and topk != lay.topk:
        refuse(f"--topk-loss {topk} but the cache keeps k = {lay.topk} classes per token (rebuild with --topk {topk})")
    smoothing = getattr(criterion, "smoothing", None)
    if smoothing is not None and float(smoothing) not in (0.0, lay.smoothing):
        refuse(f"--central-smoothing {smoothing} but the cache's tail term was built with {lay.smoothing} "
               f"(rebuild with --central-smoothing {smoothing}, or use 0 or {lay.smoothing})")
    lo, hi = lay.temperatures[0], lay.temperatures[-1]
    for name, t in (("--init-temp", task.cfg.init_temp), ("--final-temp", task.cfg.final_temp), ("validation's T", 1.0)):
        if not lo <= float(t) <= hi:
            refuse(f"{name} = {t} is outside the cache's temperature grid [{lo:g}, {hi:g}] (rebuild with --temperatures)")
    if teacher_paths:
        cache.check_teachers(teacher_paths)
    return cache


def attach_cached(task: Any, sample: Dict[str, Any], temperature: float, update_num: Optional[int]) -> None:
    """``sample["ensemble"]`` from the cache: the train split's in training, the matching valid split's otherwise."""
    target = sample["target"]
    mask = target.ne(task.target_dictionary.pad())
    train = _train_subset(task)
    # validation: the loaded splits other than the train split first (--valid-subset may name the train split too)
    splits = [train] if update_num is not None else [s for s in getattr(task, "datasets", {}) if s != train] + [train]
    for split in splits:
        cache = open_subset_cache(task, split)
        rows = cache.batch(sample["id"], target, mask)
        if rows is None:
            continue
        sample["ensemble"] = EnsembleBatch(
            log_probs=None, mask=mask, temperature=temperature, update_num=update_num,
            record=cache.record(rows), layout=cache.layout, target_mean_log=rows["target_mean_log"].float(),
        )
        return
    raise TeacherCacheError(
        f"{FLAG} {task.cfg.teacher_cache}: the batch's target tokens are not the cached ones of split(s) "
        f"{', '.join(splits) or '(none loaded)'} (stale cache: other data or other preprocessing)"
    )
