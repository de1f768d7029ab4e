"""Teacher ensemble for sequence distillation: load, validate, and score a batch.

The teachers are plain fairseq checkpoints (any architecture the student's task
can build). They are loaded once, put in eval mode with gradients disabled,
kept *outside* the student model (so they never enter the student's state dict,
its checkpoints, its optimizer or its DDP wrapper) and moved lazily to the
student's device on the first batch.

Per batch they produce teacher-forced log-probabilities only at the non-padding
target positions, written member by member into one preallocated tensor
``[N, M, V]`` (``N`` = number of real target tokens): the memory-lean
equivalent of ``[B, T, M, V]`` without its padding rows and without a second
(stacked) copy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from endist_seq.checkpoint_safety import (
    check_checkpoint_config,
    check_checkpoint_dictionaries,
    require_weights_only_loading,
)
from endist_seq.errors import EndistUserError

logger = logging.getLogger(__name__)


class TeacherCheckpointError(EndistUserError):
    """A teacher checkpoint is missing, unreadable, or incompatible with the student."""


@dataclass
class EnsembleBatch:
    """Teacher predictions for one batch, attached to the fairseq sample as ``sample["ensemble"]``.

    Attributes:
        log_probs: ``[N, M, V]`` float32 teacher-forced log-probabilities of the
            ``M`` teachers at the ``N`` non-padding target positions (row order =
            ``target[mask]``); None when the batch comes from a teacher cache.
        mask: ``[B, T]`` bool, True at non-padding target positions.
        temperature: distillation temperature for this batch (1.0 in validation).
        update_num: completed updates when the batch is processed (``None`` in validation);
            the criterions' annealed cross-entropy weight reads it.
        record, layout: the batch's rows of a teacher cache (``--teacher-cache``,
            :class:`shared.teacher_cache.TeacherCacheRecord` / ``CacheLayout``), else None.
        target_mean_log: ``[N]`` (1/M) Σ_m ln p_m(y_t) from the cache (the logged teacher NLL), else None.
    """

    log_probs: Optional[Tensor]
    mask: Tensor
    temperature: float
    update_num: Optional[int] = None
    record: Optional[Any] = None
    layout: Optional[Any] = None
    target_mean_log: Optional[Tensor] = None


#: the flag named in this module's error messages
FLAG = "--ensemble-paths"


def split_paths(spec: str) -> List[str]:
    """``"a.pt,b.pt"`` → ``["a.pt", "b.pt"]`` (empty items dropped)."""
    return [p.strip() for p in (spec or "").split(",") if p.strip()]


def _checkpoint_cfg(path: str, state: Dict[str, Any]) -> Any:
    cfg = state.get("cfg")
    if cfg is None and state.get("args") is not None:
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf

        cfg = convert_namespace_to_omegaconf(state["args"])
    if cfg is None or "model" not in state:
        raise TeacherCheckpointError(
            f"--ensemble-paths: {path} is not a fairseq model checkpoint (no 'cfg'/'args' or no 'model' entry)"
        )
    return cfg


def load_teacher(path: str, task: Any) -> torch.nn.Module:
    """Load one teacher checkpoint as an eval-mode, no-grad model built for ``task``'s dictionaries.

    Raises:
        TeacherCheckpointError: missing/unreadable file, not a model checkpoint,
            or weights that do not fit the architecture.
        UnsafeCheckpointError: a config field fairseq would ``eval()`` is not a literal.
        CheckpointDictionaryError: the teacher's dictionaries differ from the student's
            (or cannot be found, unless ``--allow-unverified-dictionaries``).
    """
    from fairseq import checkpoint_utils, models

    require_weights_only_loading()
    if not os.path.exists(path):
        raise TeacherCheckpointError(f"--ensemble-paths: teacher checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise TeacherCheckpointError(f"--ensemble-paths: teacher checkpoint {path} is not a file")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as err:  # torch/pickle raise many different types for a corrupt file
        raise TeacherCheckpointError(
            f"--ensemble-paths: cannot read teacher checkpoint {path}: {type(err).__name__}: {err}"
        ) from err
    cfg = _checkpoint_cfg(path, state)
    # before any model is built: no config string that fairseq eval()s may hold code,
    # and the teacher's dictionaries (symbols, in order) must be the student's
    check_checkpoint_config(path, state, FLAG)
    check_checkpoint_dictionaries(
        path, state, task, FLAG, allow_unverified=bool(getattr(task.cfg, "allow_unverified_dictionaries", False))
    )
    # models.build_model, not task.build_model: the translation task's build_model
    # would also (re)build its BLEU sequence generator around the teacher.
    model = models.build_model(cfg.model, task, from_checkpoint=True)
    try:
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    except RuntimeError as err:
        raise TeacherCheckpointError(
            f"--ensemble-paths: weights of teacher checkpoint {path} do not fit its architecture with the "
            f"student's dictionaries: {err}"
        ) from err
    model.eval()
    model.requires_grad_(False)
    return model


class TeacherEnsemble:
    """``M`` frozen teacher models that score batches teacher-forced.

    Deliberately *not* an ``nn.Module`` attribute of the student: it lives on the
    task, so fairseq never checkpoints, optimises or DDP-wraps it.
    """

    def __init__(self, models_: Sequence[torch.nn.Module], paths: Sequence[str], dtype: Optional[torch.dtype] = None):
        if not models_:
            raise TeacherCheckpointError("--ensemble-paths: at least one teacher checkpoint is required")
        self.models = list(models_)
        self.paths = list(paths)
        self.dtype = dtype
        self.device: Optional[torch.device] = None

    @classmethod
    def load(cls, paths: Sequence[str], task: Any, dtype: Optional[torch.dtype] = None) -> "TeacherEnsemble":
        """Load and validate every checkpoint in ``paths`` (fails on the first bad one, naming it)."""
        models_ = [load_teacher(p, task) for p in paths]
        logger.info("loaded %d teachers: %s", len(models_), ", ".join(paths))
        return cls(models_, paths, dtype)

    def __len__(self) -> int:
        return len(self.models)

    def to(self, device: torch.device) -> "TeacherEnsemble":
        """Move the teachers to ``device`` (and cast to the ensemble dtype) once."""
        if self.device != device:
            for model in self.models:
                model.to(device=device, dtype=self.dtype) if self.dtype is not None else model.to(device)
            self.device = device
        return self

    @torch.no_grad()
    def log_probs(self, net_input: Dict[str, Tensor], mask: Tensor) -> Tensor:
        """Teacher-forced log-probabilities at the ``mask`` positions, ``[N, M, V]`` float32.

        ``log p_m(y_t | y_<t, x) = log_softmax(z_m)_t`` for each teacher ``m``;
        one member's logits are alive at a time besides the output tensor.
        """
        out: Optional[Tensor] = None
        for m, model in enumerate(self.models):
            net_output = model(**net_input)
            if getattr(getattr(model, "decoder", None), "adaptive_softmax", None) is not None:
                member = model.get_normalized_probs(net_output, log_probs=True)[mask].float()
            else:
                member = torch.log_softmax(net_output[0][mask].float(), dim=-1)
            del net_output
            if out is None:
                out = member.new_empty(member.shape[0], len(self.models), member.shape[-1])
            out[:, m] = member
            del member
        assert out is not None
        return out
