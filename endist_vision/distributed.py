"""Process-group setup for ``torchrun`` (DistributedDataParallel). Single process when ``WORLD_SIZE``
is unset. Backend: NCCL on CUDA, gloo on CPU (testable on a laptop).

A rank that stops answering must not block the others for torch's default 30 minutes: the process
group is created with ``train.dist_timeout_s`` and a collective that runs past it ends the run with one
line (:class:`DistributedTimeoutError`, exit code 6) instead of a backend traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from .errors import ConfigError, EndistVisionError

DEFAULT_TIMEOUT_S = 1800.0  # torch's own default (30 min)


class DistributedTimeoutError(EndistVisionError):
    """Another rank did not answer a collective within ``train.dist_timeout_s``."""

    exit_code = 6


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA (``cuda:local_rank``) if available else CPU; ``cpu``; ``cuda``."""
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but CUDA is not available")
    return torch.device("cuda", local_rank)


def parse_timeout(value: object) -> float:
    """``train.dist_timeout_s`` as a positive number of seconds (None: torch's default 1800 s)."""
    if value is None:
        return DEFAULT_TIMEOUT_S
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        t = float("nan")
    if not (t > 0 and t < float("inf")):
        raise ConfigError(f"train.dist_timeout_s={value!r}: expected a positive number of seconds")
    return t


def init_distributed(device_spec: str, timeout_s: object = None) -> DistInfo:
    """Initialise the default process group from torchrun's environment (if any), with a collective
    timeout of ``timeout_s`` seconds."""
    timeout = parse_timeout(timeout_s)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_spec, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout))
    return DistInfo(rank, world, local, device, timeout)


def _is_timeout(e: BaseException) -> bool:
    text = str(e).lower()
    return "timed out" in text or "timeout" in text or isinstance(e, getattr(dist, "DistNetworkError", ()))


@contextlib.contextmanager
def timeout_as_error(info: DistInfo) -> Iterator[None]:
    """Turn a collective that ran past ``info.timeout_s`` (or lost its peer) into a one-line
    :class:`DistributedTimeoutError`; other errors pass through unchanged."""
    try:
        yield
    except RuntimeError as e:
        if not (info.enabled and _is_timeout(e)):
            raise
        raise DistributedTimeoutError(
            f"rank {info.rank}: another rank did not answer within train.dist_timeout_s={info.timeout_s:g} s "
            f"(stalled or dead; {type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


def all_finite(value: float, info: DistInfo) -> bool:
    """Whether ``value`` is finite on every rank (one all-reduce of a scalar when distributed)."""
    if not info.enabled:
        return bool(torch.isfinite(torch.tensor(value)))
    t = torch.tensor([0.0 if torch.isfinite(torch.tensor(value)) else 1.0], device=info.device)
    dist.all_reduce(t)
    return float(t) == 0.0


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
