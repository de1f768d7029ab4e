"""The single training loop for every method (``endist-vision train``).

Per optimiser step ``s`` (epoch ``e = s // steps_per_epoch``, batch ``j = s % steps_per_epoch``):
the global batch is ``perm_e[j·G : (j+1)·G]`` with ``perm_e`` a permutation seeded by (seed, e, stream);
rank r of W takes the r-th slice of G/W examples and splits it into ``accumulate`` micro-batches, each
loss scaled by 1/accumulate, so the summed gradient equals the gradient of the mean loss over the G
examples — for any W and accumulate (tested: 2-process gloo DDP and ``accumulate=2`` vs one process).

Exact resume: every source of randomness is a function of (seed, step) — data order, per-sample
augmentation seeds — or is saved in the checkpoint (global torch RNG used by dropout, optimiser,
scheduler, AMP scaler, method state), so a run killed at any point and resumed from its last
checkpoint reproduces the uninterrupted run bit for bit on CPU.

Pieces (:func:`train` calls them in this order):

* :func:`plan_run` validates config, data, method and teacher (nothing written yet) → :class:`TrainPlan`;
* :func:`build_state` creates model/optimiser/scheduler/scaler and, on ``--resume``, :func:`restore_state`
  loads ``checkpoints/last.pt`` → :class:`RunState` (a run directory without a checkpoint starts at step 0);
* :func:`open_run_dir` writes ``config.yaml`` and removes the run's own stale ``*.tmp`` files;
* :func:`train_step` is one optimiser step; :func:`save_state` the resumable checkpoint; after each step the
  ``on_step_end`` hooks of :func:`train` see a :class:`StepEnd` (tests inject faults there);
* :func:`finish_run` runs ``method.post_train`` and writes ``final.pt`` and ``metrics.json``.

A non-finite loss stops the run before the update (:class:`NonFiniteLossError`, exit code 5) and leaves
the last checkpoint resumable.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import yaml
from torch import nn

from .checkpoint import FORMAT, check_output_dir, load_checkpoint, read_run_config
from .config import validate
from .data import concat, load_dataset
from .data.augment import build_augment
from .data.base import DataBundle, Dataset
from .distributed import DistInfo, all_finite, barrier, init_distributed, shutdown, timeout_as_error
from .errors import CheckpointError, ConfigError, EndistVisionError
from .io_utils import atomic_torch_save, atomic_write_json, atomic_write_text
from .methods import Method, get_method
from .models import create_model
from .teacher import TeacherEnsemble, load_teacher
from shared.progress import progress, progress_mode

RESUME_OVERRIDABLE = {("train", "progress"), ("train", "num_workers"), ("train", "device"), ("train", "log_every"),
                      ("train", "dist_timeout_s"), ("train", "val_every")}
# temp files of the atomic writes of this module (shared.io: ".NAME.<random>.tmp"), per folder of the run
OWN_TEMPS = {".": (".config.yaml.*.tmp", ".metrics.json.*.tmp"),
             "checkpoints": (".last.pt.*.tmp", ".last.rng*.pt.*.tmp", ".final.pt.*.tmp")}


class NonFiniteLossError(EndistVisionError):
    """The training loss became NaN/Inf; the run stopped before applying that step."""

    exit_code = 5


@dataclass(frozen=True)
class StepEnd:
    """What an ``on_step_end`` hook of :func:`train` sees after optimiser step ``step`` (1-based), once
    that step's checkpoint (if any) is written."""

    step: int
    total: int
    loss: float
    rank: int
    run_dir: Path


StepHook = Callable[[StepEnd], None]


class _StudentForward(nn.Module):
    """Wraps ``method.forward(model, x)`` so DDP sees (and synchronises) the method's forward."""

    def __init__(self, model: nn.Module, method: Method) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.forward(self.model, x)


class StepBatches(torch.utils.data.Dataset):
    """Item ``s`` = this rank's share of global step ``s``: ``(x, y, idx)`` with shapes
    ``[S, B_local, ...]``, ``[S, B_local]``, ``[S, B_local]`` (S = number of streams)."""

    def __init__(self, ds: Dataset, seed: int, streams: int, global_batch: int, steps_per_epoch: int,
                 rank: int, world: int, augment: Any) -> None:
        self.ds, self.seed, self.streams, self.G, self.spe = ds, seed, streams, global_batch, steps_per_epoch
        self.rank, self.world, self.augment = rank, world, augment
        self._perm_epoch: int | None = None
        self._perms: list[torch.Tensor] = []

    def perms(self, epoch: int) -> list[torch.Tensor]:
        if self._perm_epoch != epoch:
            self._perms = [
                torch.randperm(len(self.ds), generator=torch.Generator().manual_seed((self.seed * 100_003 + epoch) * 1_009 + s))
                for s in range(self.streams)
            ]
            self._perm_epoch = epoch
        return self._perms

    def __len__(self) -> int:  # pragma: no cover - indexed by step
        return 2**62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, j = divmod(int(step), self.spe)
        local = self.G // self.world
        xs, ys, idxs = [], [], []
        for perm in self.perms(epoch):
            idx = perm[j * self.G : (j + 1) * self.G][self.rank * local : (self.rank + 1) * local]
            seeds = ((self.seed * 1_000_003 + epoch) * 10_000_019 + idx.numpy().astype(np.int64)) % (2**31 - 1)
            x, y = self.ds.get(idx.numpy(), self.augment, seeds)
            xs.append(x)
            ys.append(y)
            idxs.append(idx)
        return torch.stack(xs), torch.stack(ys), torch.stack(idxs)


@dataclass
class TrainPlan:
    """Everything about a run that is fixed before the first step (validated, nothing written yet)."""

    cfg: dict[str, Any]
    run_dir: Path
    info: DistInfo
    data: DataBundle
    transfer: Dataset  # train (+ AUX for distillation)
    method: Method
    teacher: TeacherEnsemble | None
    make_model: Callable[[int], nn.Module]
    global_batch: int
    accumulate: int
    steps_per_epoch: int
    total: int
    resume: bool
    checkpoint: dict[str, Any] | None = None  # last.pt of a resumed run (None: start at step 0)
    cached_targets: torch.Tensor | None = None  # [N, M, K] teacher log-probs ([EnD2] App. A)
    online_teacher: bool = False
    cache_plan: Any = None  # topk_cache: endist_vision.topk_cache.CachePlan (path, key, manifest once built)
    teacher_cache: Any = None  # topk_cache: the memory-mapped endist_vision.teacher_cache_store.TeacherCache

    @property
    def device(self) -> torch.device:
        return self.info.device

    @property
    def amp_on(self) -> bool:
        return self.cfg["train"]["amp"] != "none" and self.device.type == "cuda"

    @property
    def amp_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.cfg["train"]["amp"] == "bf16" else torch.float16


@dataclass
class RunState:
    """The mutable, checkpointed state: ``step`` optimiser steps are done."""

    model: nn.Module
    student: nn.Module  # _StudentForward(model), DDP-wrapped when distributed
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    saved_step: int | None = None  # step of the newest checkpoint on disk
    batch_values: dict[str, float] = field(default_factory=dict)  # :func:`batch_scalars` of the last logged step


def check_run_dir(run_dir: Path, resume: bool) -> bool:
    """Refuse to clobber: a fresh run needs a new/empty directory; a resume needs the run's config.yaml.
    Returns whether ``checkpoints/last.pt`` exists (a resume without it starts from step 0)."""
    check_output_dir(run_dir, "--out")
    has_ckpt = (run_dir / "checkpoints" / "last.pt").is_file()
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(f"--resume: {run_dir} has no config.yaml (not a run directory)")
    elif (run_dir / "config.yaml").exists() or has_ckpt or (run_dir / "checkpoints" / "final.pt").exists():
        raise ConfigError(f"--out {run_dir}: already holds a run; pass --resume to continue it or choose a new directory")
    return has_ckpt


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The saved config of ``run_dir``; only runtime keys (``RESUME_OVERRIDABLE``: progress, workers, device,
    log_every, dist_timeout_s, val_every) may be overridden."""
    cfg = read_run_config(run_dir, "--out")
    for sec, vals in overrides.items():
        for k, v in (vals.items() if isinstance(vals, dict) else [(None, vals)]):
            if (sec, k) not in RESUME_OVERRIDABLE:
                raise ConfigError(f"--resume: cannot change {sec}{'.' + k if k else ''} of an existing run")
            cfg[sec][k] = v
    validate(cfg)  # a runtime override has the same type and range checks as a fresh run's
    return cfg


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete the temp files this module's atomic writes leave behind when a run is killed mid-write
    (only names of its own outputs, see ``OWN_TEMPS``); returns the removed paths."""
    removed = []
    for sub, patterns in OWN_TEMPS.items():
        for pat in patterns:
            for p in sorted((run_dir / sub).glob(pat)):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def plan_run(cfg: dict[str, Any], run_dir: Path, resume: bool, info: DistInfo) -> TrainPlan:
    """Validate everything (config, data, method, teacher, run directory) before touching the run."""
    t = cfg["train"]
    try:
        method_cls = get_method(cfg["method"])
    except KeyError as e:
        raise ConfigError(f"method: {e.args[0]}") from e
    data = load_dataset(cfg["data"], with_ood=False)
    transfer = data.train
    if method_cls.needs_teacher and data.aux is not None:
        transfer = concat(data.train, data.aux, "transfer")  # [EnD2] "+AUX": AUX treated like in-domain
    G, W, A = int(t["batch_size"]), info.world_size, int(t["accumulate"])
    if G % (W * A) != 0:
        raise ConfigError(f"train.batch_size={G} must be divisible by world_size×accumulate = {W}×{A}")
    if G > len(transfer):
        raise ConfigError(f"train.batch_size={G} is larger than the training set ({len(transfer)})")
    spe = len(transfer) // G
    method_config = method_cls.parse_config(cfg)  # method_args errors come before the teacher is loaded
    # a method may add epochs of its own (Hydra's phase-1 budget, method_args.phase1_epochs)
    total = int(t["max_steps"]) if t.get("max_steps") else (int(t["epochs"]) + method_cls.extra_epochs(method_config)) * spe
    cache_plan = None
    if method_cls.needs_teacher and cfg["distill"]["teacher_mode"] == "topk_cache":
        from .topk_cache import check_supported, plan_cache, temperature_grid

        check_supported(method_cls, method_config)
        cache_plan = plan_cache(cfg["distill"], data, transfer, run_dir,  # a stale cache is refused here
                                temperature_grid(method_cls, method_config))
    load = method_cls.needs_teacher and (cache_plan is None or cache_plan.manifest is None)  # a reused cache: no teacher
    teacher = load_teacher(cfg["distill"], data.num_classes, data.name, data).to(info.device) if load else None
    members = teacher.num_members if teacher is not None else (cache_plan.manifest["members"] if cache_plan else None)
    method = method_cls(cfg, data.num_classes, total, teacher_members=members)
    has_ckpt = check_run_dir(run_dir, resume)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt") if resume and has_ckpt else None
    if resume and checkpoint is None and info.is_main:
        print(f"note: --resume: {run_dir} has no checkpoint yet; starting from step 0 with its config.yaml", file=sys.stderr)
    if t["amp"] != "none" and info.device.type != "cuda" and info.is_main:
        print(f"note: train.amp={t['amp']} ignored on {info.device.type} (AMP is CUDA-only)", file=sys.stderr)
    barrier(info)
    return TrainPlan(cfg, run_dir, info, data, transfer, method, teacher, _make_model_fn(cfg, data), G, A, spe, total, resume,
                     checkpoint, cache_plan=cache_plan)


def _make_model_fn(cfg: dict[str, Any], data: DataBundle):
    def make_model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        try:
            return create_model(cfg["model"]["name"], data.num_classes, mean=data.mean, std=data.std,
                                in_channels=data.in_channels, **(cfg["model"].get("kwargs") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"model.name={cfg['model']['name']} / model.kwargs: {e}") from e

    return make_model


def _optimizer(groups: list[dict[str, Any]], t: dict[str, Any]) -> torch.optim.Optimizer:
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=float(t["lr"]), momentum=float(t["momentum"]), nesterov=bool(t["nesterov"]))
    cls = torch.optim.AdamW if t["optimizer"] == "adamw" else torch.optim.Adam
    return cls(groups, lr=float(t["lr"]))


def warmup_steps(t: dict[str, Any], steps_per_epoch: int) -> int:
    """Steps of linear warm-up: ``train.warmup_steps`` if set, else ``train.warmup_epochs × steps_per_epoch``."""
    return int(t["warmup_steps"]) if t.get("warmup_steps") is not None else int(t.get("warmup_epochs") or 0) * steps_per_epoch


def lr_factor(u: int, length: int, schedule: str, warmup: int, start_factor: float, pct_start: float) -> float:
    """LR multiplier at step ``u`` of a schedule phase of ``length`` steps (the LR of step ``u`` is
    ``base_lr × factor``).

    Warm-up ([LatentBE] App. B.2: "starts from 0.01 × base_lr and reaches base_lr after the first 5 epochs"):
    ``f(u) = a + (1 − a)·u/W`` for ``u < W`` (``a = train.warmup_start_factor``, ``W`` warm-up steps); then over the
    remaining ``L' = length − W`` steps, with ``v = u − W``: ``cosine`` ("single-cycle cosine annealing")
    ``f = ½(1 + cos(π v / L'))``, ``constant`` ``f = 1``, ``onecycle`` (only without warm-up, when a method restarts
    the schedule per phase) the cosine one-cycle of ``torch.optim.lr_scheduler.OneCycleLR`` (div 25, final div 1e4;
    momentum is not cycled).
    """
    if u < warmup:
        return start_factor + (1.0 - start_factor) * u / warmup
    v, rest = u - warmup, max(length - warmup, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(v, rest) / rest))
    if schedule == "onecycle":
        up = max(float(pct_start) * rest - 1, 1.0)
        lo, end = 1.0 / 25.0, 1.0 / 25.0 / 1e4
        if v <= up:
            return lo + (1.0 - lo) * 0.5 * (1.0 - math.cos(math.pi * v / up))
        down = max(rest - 1 - up, 1.0)
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(v - up, down) / down))
    return 1.0


def _scheduler(opt: torch.optim.Optimizer, t: dict[str, Any], total: int, steps_per_epoch: int = 1,
               phase_starts: Sequence[int] = (0,)) -> torch.optim.lr_scheduler.LRScheduler:
    """The LR schedule of a run. Without warm-up and restarts: torch's ``OneCycleLR`` / ``CosineAnnealingLR`` /
    constant. With ``train.warmup_epochs``/``warmup_steps`` > 0 or a method that restarts the schedule at
    ``phase_starts`` (Hydra phase 2): a ``LambdaLR`` of :func:`lr_factor`, restarted at every phase start (each
    phase gets the warm-up and its own cosine). A function of the step only, so resume stays exact."""
    warm = warmup_steps(t, steps_per_epoch)
    starts = sorted({0, *(int(s) for s in phase_starts if 0 < int(s) < total)})
    if warm == 0 and len(starts) == 1:
        if t["schedule"] == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(total, 2),
                                                       pct_start=float(t["pct_start"]), cycle_momentum=t["optimizer"] == "sgd")
        if t["schedule"] == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    bounds = starts + [max(total, 1)]
    sched, a, pct = t["schedule"], float(t.get("warmup_start_factor", 0.01)), float(t["pct_start"])

    def factor(step: int) -> float:
        i = max(j for j in range(len(starts)) if starts[j] <= step)
        length = bounds[i + 1] - bounds[i]
        return lr_factor(step - bounds[i], length, sched, min(warm, max(length - 1, 0)), a, pct)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _meta(cfg: dict[str, Any], data: DataBundle, method: Method, model: nn.Module) -> dict[str, Any]:
    return {"num_classes": data.num_classes, "mean": list(map(float, data.mean)), "std": list(map(float, data.std)),
            "in_channels": data.in_channels, "input_kind": data.input_kind, "image_size": data.image_size,
            "data_name": data.name, "method": cfg["method"], "num_members": int(getattr(model, "num_members", 1)),
            **method.eval_meta()}


def _rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def build_state(plan: TrainPlan) -> RunState:
    """Student, optimiser, scheduler and AMP scaler at step 0, or restored from ``plan.checkpoint``."""
    t, info = plan.cfg["train"], plan.info
    model = plan.method.build_student(plan.make_model).to(plan.device)
    if plan.checkpoint is None and plan.teacher is not None:
        plan.method.init_from_teacher(model, plan.teacher)  # e.g. BE+INIT; a resumed run loads its weights
    opt = _optimizer(plan.method.param_groups(model, float(t["lr"]), float(t["weight_decay"])), t)
    sched = _scheduler(opt, t, plan.total, plan.steps_per_epoch, plan.method.phase_starts())
    scaler = torch.amp.GradScaler("cuda", enabled=plan.amp_on and t["amp"] == "fp16")
    state = RunState(model, model, opt, sched, scaler)
    if plan.checkpoint is not None:
        restore_state(plan, state, plan.checkpoint)
    else:
        torch.manual_seed(int(plan.cfg["seed"]) * 7919 + 17 + info.rank)  # dropout etc.; differs per rank
    state.student = _StudentForward(model, plan.method)
    if info.enabled:
        state.student = torch.nn.parallel.DistributedDataParallel(
            state.student, device_ids=[plan.device.index] if plan.device.type == "cuda" else None)
    return state


def restore_state(plan: TrainPlan, state: RunState, ckpt: dict[str, Any]) -> None:
    """Load ``checkpoints/last.pt`` (and this rank's RNG file) into ``state``."""
    ck_dir = plan.run_dir / "checkpoints"
    try:
        state.model.load_state_dict(ckpt["model"])
        state.opt.load_state_dict(ckpt["optimizer"])
        state.sched.load_state_dict(ckpt["scheduler"])
        state.scaler.load_state_dict(ckpt["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{ck_dir}/last.pt does not match this run's config: {str(e)[:300]}") from e
    plan.method.load_state_dict(ckpt["method_state"])
    state.step = state.saved_step = int(ckpt["step"])
    state.history = list(ckpt["history"])
    rank = plan.info.rank
    _set_rng_state(ckpt["rng"] if rank == 0 else torch.load(ck_dir / f"last.rng{rank}.pt", weights_only=True))


def save_state(plan: TrainPlan, state: RunState) -> None:
    """Write the resumable checkpoint ``checkpoints/last.pt`` (rank > 0: its RNG to ``last.rng<r>.pt``)."""
    info, ck_dir = plan.info, plan.run_dir / "checkpoints"
    if info.rank > 0:
        atomic_torch_save(ck_dir / f"last.rng{info.rank}.pt", _rng_state())
    barrier(info)
    if info.is_main:
        atomic_torch_save(ck_dir / "last.pt", {
            "format": FORMAT, "step": state.step, "model": state.model.state_dict(), "optimizer": state.opt.state_dict(),
            "scheduler": state.sched.state_dict(), "scaler": state.scaler.state_dict(), "method_state": plan.method.state_dict(),
            "rng": _rng_state(), "history": state.history,
            "meta": {"num_classes": plan.data.num_classes, "method": plan.cfg["method"]},
        })
    barrier(info)
    state.saved_step = state.step


def prepare_teacher_targets(plan: TrainPlan) -> None:
    """Cached teacher log-probs on the unaugmented transfer inputs ([EnD2] App. A), online mode, or the
    memory-mapped top-k cache (built here when it does not exist yet; the teachers are released after)."""
    if plan.cache_plan is not None:
        from .topk_cache import build_cache, open_cache

        built = plan.cache_plan.manifest is None
        if built:
            nw = int(plan.cfg["train"]["num_workers"])
            build_cache(plan.cache_plan, plan.teacher, plan.transfer, plan.device, plan.info, 1024, nw)
        plan.teacher_cache = open_cache(plan.cache_plan, built, plan.info)
        plan.teacher = None
        return
    if plan.teacher is None:
        return
    plan.online_teacher = plan.cfg["distill"]["teacher_mode"] == "online" or plan.method.needs_online_teacher
    if not plan.online_teacher:
        from .evaluation import predict

        nw = int(plan.cfg["train"]["num_workers"])
        logits = predict(plan.teacher, plan.transfer, plan.device, 1024, nw, desc="teacher targets", progress_mode=run_progress_mode(plan))
        plan.cached_targets = torch.log_softmax(logits, dim=-1)


def run_progress_mode(plan: TrainPlan) -> str:
    """Progress bars of a run: ``train.progress`` true → on, false → off, null → the command line's ``--progress``
    (else ``ENDIST_PROGRESS``, else auto: only on a terminal); always off on ranks > 0."""
    if not plan.info.is_main:
        return "off"
    p = plan.cfg["train"].get("progress")
    return progress_mode() if p is None else ("on" if p else "off")


def open_run_dir(plan: TrainPlan) -> Any:
    """Create the run directory (config.yaml first), drop stale temps; returns the TensorBoard writer (rank 0)."""
    run_dir, info = plan.run_dir, plan.info
    writer = None
    if info.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not plan.resume:
                atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(plan.cfg, sort_keys=False))
            (run_dir / "checkpoints").mkdir(exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {run_dir}: cannot write the run directory ({e.strerror or e})") from e
        remove_stale_temps(run_dir)
        from torch.utils.tensorboard import SummaryWriter

        start = plan.checkpoint["step"] if plan.checkpoint else 0
        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start if plan.resume else None)  # drop events after it
    barrier(info)
    return writer


def step_batches(plan: TrainPlan, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """This rank's ``(x, y, idx)`` of steps ``start … total−1`` (see :class:`StepBatches`)."""
    cfg, info = plan.cfg, plan.info
    augment = build_augment(cfg["data"]["augment"], plan.data.image_size)
    batches = StepBatches(plan.transfer, int(cfg["seed"]), plan.method.num_streams, plan.global_batch, plan.steps_per_epoch,
                          info.rank, info.world_size, augment)
    nw = int(cfg["train"]["num_workers"])
    if nw == 0:
        return (batches[s] for s in range(start, plan.total))
    # workers get their base seed from a private generator, not the global RNG (which drives dropout and
    # must stay identical with and without workers); batches themselves are seeded by step, not by worker.
    return iter(torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(start, plan.total), num_workers=nw,
                                            generator=torch.Generator().manual_seed(0), pin_memory=plan.device.type == "cuda"))


def logged_step(plan: TrainPlan, done: int) -> bool:
    """Whether the state after ``done`` optimiser steps is logged (every ``train.log_every`` steps and the last)."""
    return done % int(plan.cfg["train"]["log_every"]) == 0 or done == plan.total


@torch.no_grad()
def batch_scalars(method: Method, out: torch.Tensor, teacher_log_probs: torch.Tensor | None) -> dict[str, float]:
    """Tensorboard scalars of one training (micro-)batch, computed on logged steps only:

    * ``alpha0``: mean precision α₀ = Σ_k α_k of a Dirichlet student, α = exp(z) + offset as evaluation reads it
      ([EnD2] eq. 9, T = 1; :func:`shared.uncertainty.alphas_from_logits`), and ``log_alpha0``, the mean of ln α₀;
    * ``diversity``: mean functional diversity of a multi-member student's ``[B, M, K]`` outputs on one batch,
      Div = Σ_{i≠j} KL(p_i‖p_j)/(M(M−1)) ([LatentBE] eq. 6, :func:`endist_vision.perturbations.ensemble_divergence`);
    * what :meth:`Method.batch_log_values` adds (Proxy-EnD²: ``beta0``, the target precision β̂₀, [Proxy] eq. 17).
    """
    from shared.uncertainty import alphas_from_logits

    from .perturbations import ensemble_divergence

    out = out.detach()
    vals: dict[str, float] = {}
    if method.output == "dirichlet" and out.dim() == 2:
        alpha0 = alphas_from_logits(out, offset=method.dirichlet_offset()).sum(-1, dtype=torch.float64)
        vals.update(alpha0=float(alpha0.mean()), log_alpha0=float(alpha0.log().mean()))
    if out.dim() == 3 and out.shape[1] >= 2 and method.num_streams == 1:  # members on the same inputs (not `ensemble`)
        vals["diversity"] = float(ensemble_divergence(out).double().mean())
    vals.update(method.batch_log_values(out, teacher_log_probs))
    return vals


def train_step(plan: TrainPlan, state: RunState, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
    """One optimiser step (step index ``state.step``) over ``accumulate`` micro-batches; returns the loss.
    A non-finite loss on any rank raises :class:`NonFiniteLossError` before the update. On logged steps
    (rank 0) ``state.batch_values`` gets :func:`batch_scalars` of the last micro-batch."""
    method, device, A, step = plan.method, plan.device, plan.accumulate, state.step
    x_all, y_all, idx_all = batch
    method.on_step_start(step, state.model, state.opt)
    state.opt.zero_grad(set_to_none=True)
    terms: list[float] = []
    micro = x_all.shape[1] // A
    for a in range(A):
        sl = slice(a * micro, (a + 1) * micro)
        x, y, idx = x_all[:, sl].to(device), y_all[:, sl].to(device), idx_all[:, sl]
        if method.num_streams == 1:
            x, y, idx = x[0], y[0], idx[0]
        tlp = plan.cached_targets[idx].to(device) if plan.cached_targets is not None else None
        if plan.teacher_cache is not None:
            from .topk_cache import batch_record

            tlp = batch_record(plan.teacher_cache, idx, device)  # compact record, read from the memory map
        x = method.perturb(x, student=state.model, teacher=plan.teacher, step=step)
        if plan.online_teacher:
            tlp = torch.log_softmax(plan.teacher(x).float(), dim=-1)
        sync = contextlib.nullcontext() if (not plan.info.enabled or a == A - 1) else state.student.no_sync()
        with sync:
            with torch.autocast(device.type, dtype=plan.amp_dtype, enabled=plan.amp_on):
                out = state.student(x)
            loss = method.loss(out, tlp, step, labels=y) / A
            state.scaler.scale(loss).backward()
        terms.append(float(loss.detach()))
    if plan.info.is_main and logged_step(plan, step + 1):
        state.batch_values = batch_scalars(method, out, tlp)
    loss_sum = float(sum(terms))
    if not all_finite(loss_sum, plan.info):
        _raise_non_finite(plan, state, terms)
    state.scaler.step(state.opt)
    state.scaler.update()
    state.sched.step()
    state.step = step + 1
    return loss_sum


def _raise_non_finite(plan: TrainPlan, state: RunState, terms: list[float]) -> None:
    where = (f"checkpoints/last.pt (step {state.saved_step}) is kept" if state.saved_step is not None
             else "no checkpoint yet (--resume restarts from step 0)")
    values = plan.method.log_values(state.step)
    raise NonFiniteLossError(
        f"train: non-finite loss at step {state.step + 1} on rank {plan.info.rank}: micro-batch loss terms "
        f"{[round(v, 6) for v in terms]}{f' ({values})' if values else ''}; stopped before the update, {where}; "
        f"lower train.lr or check the data")


def _log(plan: TrainPlan, state: RunState, loss: float, writer: Any, bar: Any) -> None:
    """Every ``train.log_every`` steps (rank 0): a history record and its tensorboard scalars ``train/loss``,
    ``train/lr``, the method's :meth:`Method.log_values` (e.g. ``distill/temperature``) and :func:`batch_scalars`."""
    done = state.step
    if plan.info.is_main and logged_step(plan, done):
        rec = {"step": done, "epoch": (done - 1) // plan.steps_per_epoch, "loss": loss,
               "lr": float(state.opt.param_groups[0]["lr"]), **plan.method.log_values(done - 1), **state.batch_values}
        state.history.append(rec)
        for k, v in rec.items():
            if k not in ("step", "epoch"):
                writer.add_scalar(k if "/" in k else f"train/{k}", v, done)
        bar.set_postfix(loss=f"{loss:.4f}")
    bar.update(1)


def run_loop(plan: TrainPlan, state: RunState, writer: Any, on_step_end: Sequence[StepHook] = ()) -> None:
    """Steps ``state.step … total−1``; checkpoint every ``train.ckpt_every`` steps and at the end."""
    t = plan.cfg["train"]
    ckpt_every = int(t["ckpt_every"]) or plan.steps_per_epoch
    bar = progress(total=plan.total, initial=state.step, desc=f"{plan.cfg['method']}", unit="step",
                   mode=run_progress_mode(plan), leave=True)
    state.model.train()
    for batch in step_batches(plan, state.step):
        loss = train_step(plan, state, batch)
        _log(plan, state, loss, writer, bar)
        if plan.info.is_main and validated_step(plan, state.step):
            validate_epoch(plan, state, writer)
        if state.step % ckpt_every == 0 or state.step == plan.total:
            save_state(plan, state)
        if on_step_end and writer is not None:
            writer.flush()  # a hook may end the process
        for hook in on_step_end:
            hook(StepEnd(state.step, plan.total, loss, plan.info.rank, plan.run_dir))
    bar.close()


VAL_SCALARS = ("accuracy", "nll", "ece")


def validated_step(plan: TrainPlan, done: int) -> bool:
    """Whether :func:`validate_epoch` runs after ``done`` steps: at the end of every ``train.val_every``-th epoch
    (0: never), except the last step, where :func:`finish_run` logs the final model's."""
    every = int(plan.cfg["train"].get("val_every", 1)) * plan.steps_per_epoch
    return every > 0 and done % every == 0 and done < plan.total


def validate_epoch(plan: TrainPlan, state: RunState, writer: Any) -> None:
    """End of an epoch (rank 0): ``val/accuracy``, ``val/nll``, ``val/ece`` (15 bins) of the model being trained
    (before ``method.post_train``, e.g. the LatentBE merge) on the validation split, at the step. Prediction in
    eval mode uses no random numbers, so resumed runs stay exact."""
    from .evaluation import quick_metrics

    meta = _meta(plan.cfg, plan.data, plan.method, state.model)
    res = quick_metrics(state.model, plan.data.val, meta, plan.device, int(plan.cfg["train"]["num_workers"]),
                        desc="validation", progress_mode=run_progress_mode(plan))
    state.model.train()
    for k in VAL_SCALARS:
        writer.add_scalar(f"val/{k}", res[k], state.step)


def finish_run(plan: TrainPlan, state: RunState, writer: Any, seconds: float) -> dict[str, Any]:
    """``method.post_train``; rank 0 writes ``checkpoints/final.pt`` and ``metrics.json``."""
    final = plan.method.post_train(state.model.eval())
    result: dict[str, Any] = {}
    if plan.info.is_main:
        from .evaluation import quick_metrics

        meta = _meta(plan.cfg, plan.data, plan.method, final)
        atomic_torch_save(plan.run_dir / "checkpoints" / "final.pt", {"format": FORMAT, "model": final.state_dict(), "meta": meta})
        nw, dev, mode = int(plan.cfg["train"]["num_workers"]), plan.device, run_progress_mode(plan)
        result = {"method": plan.cfg["method"], "total_steps": plan.total, "steps_per_epoch": plan.steps_per_epoch,
                  "train_seconds_this_session": seconds, "history": state.history,
                  "val": quick_metrics(final, plan.data.val, meta, dev, nw, desc="validation", progress_mode=mode),
                  "test": quick_metrics(final, plan.data.test, meta, dev, nw, desc="test", progress_mode=mode)}
        atomic_write_json(plan.run_dir / "metrics.json", result)
        for k in VAL_SCALARS:  # the final model's (after method.post_train), at the last step
            writer.add_scalar(f"val/{k}", result["val"][k], plan.total)
        writer.close()
    barrier(plan.info)
    return result


def train(cfg: dict[str, Any], run_dir: str | Path, resume: bool = False, *, on_step_end: Sequence[StepHook] = ()) -> dict[str, Any]:
    """Train according to ``cfg`` into ``run_dir``; returns the final metrics dict (empty on ranks > 0).

    ``on_step_end``: callables run on every rank after each optimiser step (and its checkpoint), e.g. to
    monitor a run or, in the tests, to simulate a crash after step N."""
    run_dir = Path(run_dir)
    info = init_distributed(cfg["train"]["device"], cfg["train"].get("dist_timeout_s"))
    try:
        with timeout_as_error(info):
            plan = plan_run(cfg, run_dir, resume, info)
            state = build_state(plan)
            prepare_teacher_targets(plan)
            writer = open_run_dir(plan)
            t0 = time.time()
            run_loop(plan, state, writer, on_step_end)
            return finish_run(plan, state, writer, time.time() - t0)
    finally:
        shutdown(info)
