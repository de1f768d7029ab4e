"""Task ``ensemble_distillation``: train a student translation model on a teacher ensemble.

Usage (``--user-dir endist_seq``)::

    fairseq-train DATA --user-dir endist_seq --task ensemble_distillation \\
        --ensemble-paths t1.pt,t2.pt,t3.pt \\
        --criterion rkl_dirichlet_proxy_distillation \\
        --init-temp 10 --final-temp 1 --anneal-start 1000 --anneal-end 5000 ...

Per batch the teachers are run teacher-forced on the same source/target prefix
(no grad, eval mode) and their log-probabilities at the non-padding target
positions are attached to the sample as ``sample["ensemble"]``
(:class:`endist_seq.teachers.EnsembleBatch`), which the endist criterions read.

Temperature ([EnD2] §3.1, App. A.2) follows
:class:`shared.schedules.TemperatureAnnealing` stepped by the update number
``u`` (number of completed updates when the batch is processed)::

    T(u) = init_temp                                  u ≤ anneal_start
    T(u) = linear from init_temp to final_temp        anneal_start < u < anneal_end
    T(u) = final_temp                                 u ≥ anneal_end

The criterions' ``--init-xent-weight``/``--final-xent-weight`` follow the same window
(:meth:`EnsembleDistillationTask.anneal_fraction`).

With ``--teacher-cache CACHE_DIR`` (built by ``endist-seq-cache``, :mod:`endist_seq.teacher_cache`) no
teacher is loaded: each batch's rows are read from the memory-mapped cache of its split (by
``sample["id"]``, checked against the batch's target tokens) and attached as ``sample["ensemble"]``
with ``record``/``layout`` instead of ``log_probs``; the criterions rebuild their losses from it
(:mod:`shared.teacher_cache`). A stale or mismatched cache (other data, dictionaries, teachers when
``--ensemble-paths`` is given too, a k or central smoothing the criterion's flags contradict, a
temperature schedule outside the cache's grid) is refused with one line.

Because ``u`` is fairseq's own update counter, which is checkpointed, the
schedule continues exactly after ``--restore-file``/``checkpoint_last.pt``.
Validation uses T = 1 so validation losses stay comparable across the run.
"""


import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig
from omegaconf import II

from endist_seq.errors import FlagError, check_finite_flags
from endist_seq.tasks.translation_uncertainty import STUDENT_STATE_KEY, TranslationUncertaintyTask
from endist_seq.teachers import EnsembleBatch, TeacherCheckpointError, TeacherEnsemble, split_paths
from shared.schedules import TemperatureAnnealing

logger = logging.getLogger(__name__)

# Derive from the parent's config dataclass when it has one, so every
# generation/uncertainty flag of ``translation_uncertainty`` stays accepted.
_ParentConfig = getattr(TranslationUncertaintyTask, "__dataclass", None) or TranslationConfig


@dataclass
class EnsembleDistillationConfig(_ParentConfig):  # type: ignore[misc, valid-type]
    ensemble_paths: str = field(
        default="",
        metadata={"help": "comma-separated teacher checkpoints (required for training), e.g. t1.pt,t2.pt"},
    )
    fp16_ensemble: bool = field(default=False, metadata={"help": "run the teachers in float16 (GPU)"})
    bf16_ensemble: bool = field(default=False, metadata={"help": "run the teachers in bfloat16"})
    init_temp: float = field(default=1.0, metadata={"help": "initial distillation temperature T0"})
    final_temp: float = field(default=1.0, metadata={"help": "temperature after annealing"})
    anneal_start: int = field(default=0, metadata={"help": "update at which the temperature starts to decay"})
    anneal_end: int = field(default=0, metadata={"help": "update at which the temperature reaches --final-temp"})
    teacher_cache: str = field(
        default="",
        metadata={"help": "train from a teacher cache built by endist-seq-cache (no teacher is loaded): "
                  "CACHE_DIR with one sub-directory per split"},
    )
    # --model-offset belongs to the criterion here; fairseq's parser skips a "${...}" default without help
    model_offset: Optional[float] = II("criterion.model_offset")


def build_schedule(cfg: Any) -> TemperatureAnnealing:
    """TemperatureAnnealing from the task flags, with errors that name the flags."""
    check_finite_flags(cfg, ["init_temp", "final_temp"])
    if cfg.init_temp <= 0 or cfg.final_temp <= 0:
        raise FlagError(f"--init-temp and --final-temp must be > 0, got {cfg.init_temp} and {cfg.final_temp}")
    if cfg.anneal_start < 0:
        raise FlagError(f"--anneal-start must be >= 0, got {cfg.anneal_start}")
    if cfg.anneal_end < cfg.anneal_start:
        raise FlagError(f"--anneal-end ({cfg.anneal_end}) must be >= --anneal-start ({cfg.anneal_start})")
    return TemperatureAnnealing(
        initial=cfg.init_temp,
        final=cfg.final_temp,
        hold_steps=cfg.anneal_start,
        decay_steps=cfg.anneal_end - cfg.anneal_start,
    )


def _ensemble_dtype(cfg: Any) -> Optional[torch.dtype]:
    if cfg.fp16_ensemble and cfg.bf16_ensemble:
        raise FlagError("--fp16-ensemble and --bf16-ensemble are mutually exclusive")
    if cfg.fp16_ensemble:
        return torch.float16
    if cfg.bf16_ensemble:
        return torch.bfloat16
    return None


@register_task("ensemble_distillation", dataclass=EnsembleDistillationConfig)
class EnsembleDistillationTask(TranslationUncertaintyTask):
    """Translation task whose train/valid steps score each batch with a frozen teacher ensemble."""

    cfg: EnsembleDistillationConfig

    def __init__(self, cfg: EnsembleDistillationConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self.temperature_schedule = build_schedule(cfg)
        self.ensemble_dtype = _ensemble_dtype(cfg)
        # Teachers are loaded in build_criterion (training only), not here: fairseq
        # also sets this task up when it merely loads a student checkpoint for
        # generation, and that must not need the teacher files.
        self.teachers: Optional[TeacherEnsemble] = None
        #: open caches by split (``--teacher-cache``), each checked against its dataset on first use
        self.teacher_caches: Dict[str, Any] = {}

    def build_criterion(self, cfg, from_checkpoint: bool = False):
        criterion = super().build_criterion(cfg, from_checkpoint=from_checkpoint)
        if not getattr(criterion, "needs_ensemble", False):
            raise FlagError(
                f"--task ensemble_distillation needs an endist distillation criterion "
                f"(forward_kl_mean_distillation, sequence_distribution_distillation, "
                f"dirichlet_proxy_distillation, rkl_dirichlet_proxy_distillation); got --criterion {cfg._name}"
            )
        paths = split_paths(self.cfg.ensemble_paths)
        if self.cfg.teacher_cache:
            from endist_seq.teacher_cache.training import check_cache_for_criterion

            check_cache_for_criterion(self, criterion, paths)
            return self._record_parametrization(criterion)
        if not paths:
            raise TeacherCheckpointError(
                "--ensemble-paths is required for training with --task ensemble_distillation "
                "(comma-separated teacher checkpoints)"
            )
        if self.teachers is None:
            self.teachers = TeacherEnsemble.load(paths, self, dtype=self.ensemble_dtype)
        return self._record_parametrization(criterion)

    def _record_parametrization(self, criterion):
        # the student's parametrization joins the training record (task_state["endist_student"]) for generation
        meta = dict(self.state.state_dict.get(STUDENT_STATE_KEY) or {})
        meta["parametrization"] = str(getattr(criterion, "parametrization", "exp"))
        self.state.merge_state_dict({STUDENT_STATE_KEY: meta})
        return criterion

    def anneal_fraction(self, update_num: int) -> float:
        """0 up to --anneal-start, linear to 1 at --anneal-end, then 1 (the temperature's window)."""
        start, end = int(self.cfg.anneal_start), int(self.cfg.anneal_end)
        if update_num <= start:
            return 0.0
        if update_num >= end or end == start:
            return 1.0
        return (update_num - start) / (end - start)

    def temperature(self, update_num: int) -> float:
        """Distillation temperature for a batch processed after ``update_num`` completed updates."""
        return float(self.temperature_schedule(update_num))

    def attach_ensemble(
        self, sample: Dict[str, Any], model: torch.nn.Module, temperature: float, update_num: Optional[int] = None
    ) -> None:
        """Compute the teachers' log-probs for ``sample`` (or read them from ``--teacher-cache``) and store
        them as ``sample["ensemble"]``."""
        if self.cfg.teacher_cache:
            from endist_seq.teacher_cache.training import attach_cached

            attach_cached(self, sample, temperature, update_num)
            return
        if self.teachers is None:
            raise RuntimeError("ensemble_distillation: teachers are not loaded (build_criterion was not called)")
        device = next(model.parameters()).device
        self.teachers.to(device)
        mask = sample["target"].ne(self.target_dictionary.pad())
        log_probs = self.teachers.log_probs(sample["net_input"], mask)
        sample["ensemble"] = EnsembleBatch(log_probs=log_probs, mask=mask, temperature=temperature, update_num=update_num)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        self.attach_ensemble(sample, model, self.temperature(update_num), update_num)
        try:
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        finally:
            sample.pop("ensemble", None)  # free the teacher tensor before the next batch

    def valid_step(self, sample, model, criterion):
        self.attach_ensemble(sample, model, 1.0)
        try:
            return super().valid_step(sample, model, criterion)
        finally:
            sample.pop("ensemble", None)

    @property
    def teacher_paths(self) -> List[str]:
        return split_paths(self.cfg.ensemble_paths)
