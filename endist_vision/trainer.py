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
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from torch import nn

from .checkpoint import FORMAT, load_checkpoint, read_run_config
from .data import concat, load_dataset
from .data.augment import build_augment
from .data.base import ArrayDataset, DataBundle
from .data.files import FileDataset
from .distributed import DistInfo, barrier, init_distributed, shutdown
from .errors import CheckpointError, ConfigError
from .io_utils import atomic_torch_save, atomic_write_json, atomic_write_text
from .methods import Method, get_method
from .models import create_model
from .teacher import TeacherEnsemble, load_teacher

DEBUG_EXIT_ENV = "ENDIST_DEBUG_EXIT_AT_STEP"  # tests: os._exit(137) after this step, like SIGKILL
RESUME_OVERRIDABLE = {("train", "progress"), ("train", "num_workers"), ("train", "device"), ("train", "log_every")}


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

    def __init__(self, ds: ArrayDataset | FileDataset, seed: int, streams: int, global_batch: int, steps_per_epoch: int,
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


def _scheduler(opt: torch.optim.Optimizer, t: dict[str, Any], total: int) -> torch.optim.lr_scheduler.LRScheduler:
    if t["schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(total, 2),
                                                   pct_start=float(t["pct_start"]), cycle_momentum=t["optimizer"] == "sgd")
    if t["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


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


def prepare_run(run_dir: Path, resume: bool) -> None:
    """Refuse to clobber: a fresh run needs a new/empty directory, a resume needs a resumable one."""
    if resume:
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise CheckpointError(f"--resume: {run_dir} has no checkpoints/last.pt to resume from")
    elif (run_dir / "config.yaml").exists() or (run_dir / "checkpoints").exists():
        raise ConfigError(f"--out {run_dir}: already holds a run; pass --resume to continue it or choose a new directory")


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The saved config of ``run_dir`` with only runtime keys (progress, workers, device) overridable."""
    cfg = read_run_config(run_dir, "--out")
    for sec, vals in overrides.items():
        for k, v in (vals.items() if isinstance(vals, dict) else [(None, vals)]):
            if (sec, k) not in RESUME_OVERRIDABLE:
                raise ConfigError(f"--resume: cannot change {sec}{'.' + k if k else ''} of an existing run")
            cfg[sec][k] = v
    return cfg


def train(cfg: dict[str, Any], run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train according to ``cfg`` into ``run_dir``; returns the final metrics dict."""
    run_dir = Path(run_dir)
    t = cfg["train"]
    info = init_distributed(t["device"])
    try:
        return _train(cfg, run_dir, resume, info)
    finally:
        shutdown(info)


def _train(cfg: dict[str, Any], run_dir: Path, resume: bool, info: DistInfo) -> dict[str, Any]:
    t = cfg["train"]
    device = info.device
    # ---------------- validate everything before touching the run directory ----------------
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
    total = int(t["max_steps"]) if t.get("max_steps") else int(t["epochs"]) * spe
    method_cls.parse_config(cfg)  # method_args errors come before the teacher is loaded
    teacher: TeacherEnsemble | None = load_teacher(cfg["distill"], data.num_classes, data.name).to(device) if method_cls.needs_teacher else None
    method = method_cls(cfg, data.num_classes, total, teacher_members=None if teacher is None else teacher.num_members)
    make_model = _make_model_fn(cfg, data)
    model = method.build_student(make_model).to(device)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    if info.is_main:
        prepare_run(run_dir, resume)
    barrier(info)

    # ---------------- optimisation objects ----------------
    opt = _optimizer(method.param_groups(model, float(t["lr"]), float(t["weight_decay"])), t)
    sched = _scheduler(opt, t, total)
    amp_on = t["amp"] != "none" and device.type == "cuda"
    if t["amp"] != "none" and not amp_on and info.is_main:
        print(f"note: train.amp={t['amp']} ignored on {device.type} (AMP is CUDA-only)", file=sys.stderr)
    amp_dtype = torch.bfloat16 if t["amp"] == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_on and t["amp"] == "fp16")
    start, history = 0, []
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{run_dir}/checkpoints/last.pt does not match this run's config: {str(e)[:300]}") from e
        method.load_state_dict(ckpt["method_state"])
        start, history = int(ckpt["step"]), list(ckpt["history"])
        rng_file = run_dir / "checkpoints" / f"last.rng{info.rank}.pt"
        _set_rng_state(ckpt["rng"] if info.rank == 0 else torch.load(rng_file, weights_only=True))
    else:
        torch.manual_seed(int(cfg["seed"]) * 7919 + 17 + info.rank)  # dropout etc.; differs per rank
    student = _StudentForward(model, method)
    if info.enabled:
        student = torch.nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)

    # ---------------- teacher targets ----------------
    cached: torch.Tensor | None = None
    online = teacher is not None and (cfg["distill"]["teacher_mode"] == "online" or method.needs_online_teacher)
    if teacher is not None and not online:  # unaugmented inputs ([EnD2] App. A), decoded by train.num_workers workers
        from .evaluation import predict

        cached = torch.log_softmax(predict(teacher, transfer, device, 1024, int(t["num_workers"])), dim=-1)

    # ---------------- run directory ----------------
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        if not resume:
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    barrier(info)
    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start if resume else None)

    augment = build_augment(cfg["data"]["augment"], data.image_size)
    batches = StepBatches(transfer, int(cfg["seed"]), method.num_streams, G, spe, info.rank, W, augment)
    nw = int(t["num_workers"])
    # workers get their base seed from a private generator, not the global RNG (which drives dropout and
    # must stay identical with and without workers); batches themselves are seeded by step, not by worker.
    it: Iterator = (iter(torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(start, total), num_workers=nw,
                                                     generator=torch.Generator().manual_seed(0), pin_memory=device.type == "cuda"))
                    if nw > 0 else (batches[s] for s in range(start, total)))
    debug_exit = int(os.environ.get(DEBUG_EXIT_ENV, "0") or 0)
    ckpt_every = int(t["ckpt_every"]) or spe
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, disable=not (info.is_main and t["progress"]), desc=f"{cfg['method']}", dynamic_ncols=True)
    model.train()
    t0 = time.time()
    for step in range(start, total):
        x_all, y_all, idx_all = next(it)
        method.on_step_start(step, model, opt)
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        micro = x_all.shape[1] // A
        for a in range(A):
            sl = slice(a * micro, (a + 1) * micro)
            x, y, idx = x_all[:, sl].to(device), y_all[:, sl].to(device), idx_all[:, sl]
            if method.num_streams == 1:
                x, y, idx = x[0], y[0], idx[0]
            tlp = None
            if cached is not None:
                tlp = cached[idx].to(device)
            x = method.perturb(x, student=model, teacher=teacher, step=step)
            if online:
                tlp = torch.log_softmax(teacher(x).float(), dim=-1)
            sync = contextlib.nullcontext() if (not info.enabled or a == A - 1) else student.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_on):
                    out = student(x)
                loss = method.loss(out, tlp, step, labels=y) / A
                scaler.scale(loss).backward()
            loss_sum += float(loss.detach())
        scaler.step(opt)
        scaler.update()
        sched.step()
        done = step + 1
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"non-finite training loss {loss_sum} at step {done} (lower train.lr?)")
        if info.is_main and (done % int(t["log_every"]) == 0 or done == total):
            rec = {"step": done, "epoch": step // spe, "loss": loss_sum, "lr": float(opt.param_groups[0]["lr"]), **method.log_values(step)}
            history.append(rec)
            for k, v in rec.items():
                if k not in ("step", "epoch"):
                    writer.add_scalar(k if "/" in k else f"train/{k}", v, done)
            bar.set_postfix(loss=f"{loss_sum:.4f}")
        bar.update(1)
        if done % ckpt_every == 0 or done == total:
            _save_last(run_dir, info, model, opt, sched, scaler, method, done, history, cfg, data)
        if debug_exit and done == debug_exit:
            if writer:
                writer.flush()
            os._exit(137)
    bar.close()

    # ---------------- final model + metrics ----------------
    final = method.post_train(model.eval())
    result: dict[str, Any] = {}
    if info.is_main:
        from .evaluation import quick_metrics

        meta = _meta(cfg, data, method, final)
        atomic_torch_save(run_dir / "checkpoints" / "final.pt", {"format": FORMAT, "model": final.state_dict(), "meta": meta})
        result = {"method": cfg["method"], "total_steps": total, "steps_per_epoch": spe, "train_seconds_this_session": time.time() - t0,
                  "history": history, "val": quick_metrics(final, data.val, meta, device, nw), "test": quick_metrics(final, data.test, meta, device, nw)}
        atomic_write_json(run_dir / "metrics.json", result)
        writer.add_scalar("val/accuracy", result["val"]["accuracy"], total)
        writer.close()
    barrier(info)
    return result


def _save_last(run_dir: Path, info: DistInfo, model: nn.Module, opt, sched, scaler, method: Method, step: int,
               history: list, cfg: dict[str, Any], data: DataBundle) -> None:
    if info.rank > 0:
        atomic_torch_save(run_dir / "checkpoints" / f"last.rng{info.rank}.pt", _rng_state())
    barrier(info)
    if info.is_main:
        atomic_torch_save(run_dir / "checkpoints" / "last.pt", {
            "format": FORMAT, "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "method_state": method.state_dict(),
            "rng": _rng_state(), "history": history, "meta": {"num_classes": data.num_classes, "method": cfg["method"]},
        })
    barrier(info)
