"""Common machinery of the endist distillation criterions (fairseq glue only; the math is in ``shared``).

Every criterion reads the teacher predictions that the ``ensemble_distillation``
task attaches to the sample (``sample["ensemble"]``: log-probs ``[N, M, V]`` at
the ``N`` non-padding target positions, the ``[B, T]`` mask, the temperature),
runs the student, selects the same ``N`` positions of its logits ``z`` and
computes, summed over real tokens (padding contributes nothing)::

    loss = Σ_t distill_t(z_t, teachers_t, T) + xent_weight · Σ_t LS-CE(z_t, y_t; ε)

where ``distill_t`` is the criterion's loss from :mod:`shared.losses` and
LS-CE is fairseq's label-smoothed cross-entropy on the reference ``y``.
fairseq divides the gradient by ``sample_size`` (target tokens, or sentences
with ``--sentence-avg``).

Logged (train, valid, and tensorboard with ``--tensorboard-logdir``):
``loss`` (per ``sample_size``, base 2 like fairseq), ``distill_loss``,
``nll_loss`` (student's reference NLL per token, base 2) and ``ppl``,
``teacher_nll`` (the teachers' own mean reference NLL, base 2), ``alpha0``
(student precision α₀ = Σ_k exp(z_k) + model_offset, mean per token),
``beta0`` (Proxy-Dirichlet target precision β̂₀, [Proxy] eq. 17, mean per
token), ``temperature`` and ``xent_weight``.

Options common to every criterion (issue 14): ``--parametrization {exp,softplus}``
(α = exp(z/T) + offset or softplus(z/T) + offset, recorded in the checkpoint for
fairseq-generate; the logged α₀ uses it), ``--init-xent-weight``/``--final-xent-weight``
(the cross-entropy weight annealed linearly over the temperature's update window
[--anneal-start, --anneal-end]; validation uses the final weight). Dirichlet criterions
only: ``--clip-precision A`` (the student's α₀ capped at A inside the loss; the logged
α₀ is the unclipped one that generation sees) and ``--topk-loss K`` (the loss over the
teachers' top-K classes plus one merged class).
"""


import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II
from torch import Tensor

from endist_seq.errors import FlagError, check_finite_flags, float_fields
from endist_seq.teachers import EnsembleBatch
from shared.dirichlet import ProxyTarget, proxy_target
from shared.teacher_cache import CacheLayout, TeacherCacheRecord, cached_proxy_target
from shared.uncertainty import alphas_from_logits

TARGET_CONCENTRATION_CHOICES = ChoiceEnum(["mkl", "epkl"])
PARAMETRIZATION_CHOICES = ChoiceEnum(["exp", "softplus"])
_LN2 = math.log(2.0)


@dataclass
class DistillationCriterionConfig(FairseqDataclass):
    sentence_avg: bool = II("optimization.sentence_avg")
    model_offset: float = field(
        default=1.0, metadata={"help": "offset added to the student's concentrations: alpha = exp(z) + offset"}
    )
    target_offset: float = field(
        default=1.0, metadata={"help": "offset added to the Proxy-Dirichlet target: beta = mean_p * beta0 + offset"}
    )
    target_concentration: TARGET_CONCENTRATION_CHOICES = field(  # type: ignore[valid-type]
        default="mkl",
        metadata={"help": "estimator of the target precision beta0: mkl ([Proxy] eq. 17) or epkl ((K-1)/EPKL)"},
    )
    xent_weight: float = field(
        default=0.0, metadata={"help": "weight of label-smoothed cross-entropy on the references added to the loss"}
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "label smoothing epsilon of the --xent-weight cross-entropy term"}
    )
    init_xent_weight: Optional[float] = field(
        default=None,
        metadata={
            "help": "cross-entropy weight up to update --anneal-start, then linear to --final-xent-weight at "
            "--anneal-end (the temperature's window; default: --xent-weight)"
        },
    )
    final_xent_weight: Optional[float] = field(
        default=None,
        metadata={"help": "cross-entropy weight from update --anneal-end on, and in validation (default: --xent-weight)"},
    )
    parametrization: PARAMETRIZATION_CHOICES = field(  # type: ignore[valid-type]
        default="exp",
        metadata={
            "help": "student concentrations alpha = exp(z/T) + offset or softplus(z/T) + offset "
            "(recorded in the checkpoint; fairseq-generate reads it)"
        },
    )
    clip_precision: Optional[float] = field(
        default=None,
        metadata={"help": "Dirichlet criterions: cap the student's precision alpha0 at this value in the loss "
                  "(log space, mean kept)"},
    )
    topk_loss: int = field(
        default=0,
        metadata={"help": "Dirichlet criterions: loss over the teachers' top-K classes of the mean plus one merged "
                  "rest class (0: all classes)"},
    )


def validate_common(cfg: DistillationCriterionConfig) -> None:
    """Reject impossible option values (NaN/Inf included) with messages that name the flag."""
    check_finite_flags(cfg, [*float_fields(DistillationCriterionConfig), "central_smoothing"])
    if cfg.xent_weight < 0:
        raise FlagError(f"--xent-weight must be >= 0, got {cfg.xent_weight}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise FlagError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.model_offset < 0:
        raise FlagError(f"--model-offset must be >= 0, got {cfg.model_offset}")
    if cfg.target_offset < 0:
        raise FlagError(f"--target-offset must be >= 0, got {cfg.target_offset}")
    for name in ("init_xent_weight", "final_xent_weight"):
        value = getattr(cfg, name, None)
        if value is not None and value < 0:
            raise FlagError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    clip = getattr(cfg, "clip_precision", None)
    if clip is not None and not clip > 0:
        raise FlagError(f"--clip-precision must be > 0, got {clip}")
    topk = getattr(cfg, "topk_loss", 0)
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 0:
        raise FlagError(f"--topk-loss must be an integer >= 0 (0: all classes), got {topk}")


class DistillationCriterion(FairseqCriterion):
    """Base class: subclasses implement :meth:`distillation_loss` (per-token, ``[N]``)."""

    #: the ``ensemble_distillation`` task checks this before loading teachers
    needs_ensemble = True
    #: read by ``translation_uncertainty`` (recorded in checkpoints for fairseq-generate)
    student_is_dirichlet = True

    def __init__(self, cfg: DistillationCriterionConfig, task: Any) -> None:
        super().__init__(task)
        validate_common(cfg)
        self.cfg = cfg
        self.sentence_avg = cfg.sentence_avg
        self.model_offset = float(cfg.model_offset)
        self.target_offset = float(cfg.target_offset)
        self.estimator = str(cfg.target_concentration)
        self.xent_weight = float(cfg.xent_weight)
        self.init_xent_weight = self.xent_weight if cfg.init_xent_weight is None else float(cfg.init_xent_weight)
        self.final_xent_weight = self.xent_weight if cfg.final_xent_weight is None else float(cfg.final_xent_weight)
        self.eps = float(cfg.label_smoothing)
        self.parametrization = str(cfg.parametrization)
        self.clip_precision = None if cfg.clip_precision is None else float(cfg.clip_precision)
        self.topk = int(cfg.topk_loss)
        if not self.student_is_dirichlet and (self.clip_precision is not None or self.topk):
            raise FlagError(
                f"--clip-precision and --topk-loss apply to the Dirichlet criterions, not --criterion {type(self).__name__}"
            )
        vocab = len(task.target_dictionary) if getattr(task, "target_dictionary", None) is not None else None
        if self.topk and vocab is not None and self.topk >= vocab:
            raise FlagError(f"--topk-loss must be below the target vocabulary size {vocab}, got {self.topk}")

    def xent_weight_at(self, update_num: Optional[int]) -> float:
        """Cross-entropy weight of a batch processed after ``update_num`` updates (``None``: validation → final).

        w(u) = init + (final − init) · f(u), with f the task's annealing fraction over
        [--anneal-start, --anneal-end] (0 before, 1 after), the window of the temperature.
        """
        if update_num is None or self.init_xent_weight == self.final_xent_weight:
            return self.final_xent_weight
        fraction = getattr(self.task, "anneal_fraction", None)
        f = 1.0 if fraction is None else float(fraction(update_num))
        return self.init_xent_weight + (self.final_xent_weight - self.init_xent_weight) * f

    def distillation_loss(self, logits: Tensor, teacher_log_probs: Tensor, temperature: float, target: ProxyTarget) -> Tensor:
        """Per-token loss ``[N]`` from student logits ``[N, V]`` and teacher log-probs ``[N, M, V]``."""
        raise NotImplementedError

    def fused_distillation_loss(self, logits: Tensor, teacher_log_probs: Tensor, temperature: float) -> Optional[Tuple[Tensor, Tensor]]:
        """(per-token loss ``[N]``, target precision β̂₀ ``[N]``) computed together — the Proxy criterions, whose loss
        then builds its own target and can take the fused paths of :func:`shared.losses.proxy_dirichlet_loss` — or
        None: :meth:`distillation_loss` then gets a precomputed target (and β̂₀ is logged from it)."""
        return None

    def cached_distillation_loss(
        self, logits: Tensor, record: TeacherCacheRecord, layout: CacheLayout, temperature: float, target: ProxyTarget
    ) -> Tensor:
        """Per-token loss ``[N]`` from a teacher cache's record (``--teacher-cache``; :mod:`shared.teacher_cache`)."""
        raise NotImplementedError

    def forward(self, model, sample: Dict[str, Any], reduce: bool = True) -> Tuple[Tensor, int, Dict[str, Any]]:
        ensemble: Optional[EnsembleBatch] = sample.get("ensemble")
        if ensemble is None:
            raise RuntimeError(
                f"criterion {self.__class__.__name__} needs teacher predictions: "
                "train with --task ensemble_distillation --ensemble-paths ..."
            )
        net_output = model(**sample["net_input"])
        mask = ensemble.mask
        logits = net_output[0][mask]  # [N, V]
        target = sample["target"][mask]  # [N]
        teacher_lp = ensemble.log_probs
        temperature = float(ensemble.temperature)

        if ensemble.record is not None:  # --teacher-cache: the losses rebuilt from the cached record
            proxy = cached_proxy_target(ensemble.record, ensemble.layout, temperature, self.estimator, self.target_offset)
            distill = self.cached_distillation_loss(logits, ensemble.record, ensemble.layout, temperature, proxy).sum()
            precision = proxy.precision
        else:
            loss_and_precision = self.fused_distillation_loss(logits, teacher_lp, temperature)
            if loss_and_precision is None:
                proxy = proxy_target(teacher_lp, estimator=self.estimator, offset=self.target_offset, temperature=temperature)
                loss_and_precision = self.distillation_loss(logits, teacher_lp, temperature, proxy), proxy.precision
            distill, precision = loss_and_precision[0].sum(), loss_and_precision[1]
        lprobs = torch.log_softmax(logits.float(), dim=-1)
        xent_weight = self.xent_weight_at(ensemble.update_num)
        if xent_weight > 0:
            xent, nll = label_smoothed_nll_loss(lprobs, target, self.eps, ignore_index=None, reduce=True)
            loss = distill + xent_weight * xent
        else:
            nll = -lprobs.detach().gather(-1, target.unsqueeze(-1)).sum()
            loss = distill

        with torch.no_grad():
            if ensemble.record is not None:
                teacher_nll = -ensemble.target_mean_log.sum()
            else:
                teacher_nll = -teacher_lp.gather(-1, target.view(-1, 1, 1).expand(-1, teacher_lp.shape[1], 1)).mean(1).sum()
            alpha0 = alphas_from_logits(logits.detach(), offset=self.model_offset, parametrization=self.parametrization)
            alpha0 = alpha0.sum(-1, dtype=torch.float64).sum()
            beta0 = precision.double().sum()

        ntokens = int(mask.sum().item())
        sample_size = sample["target"].size(0) if self.sentence_avg else ntokens
        logging_output = {
            "loss": loss.data,
            "distill_loss": distill.data,
            "nll_loss": nll.data,
            "teacher_nll": teacher_nll.data,
            "alpha0": alpha0.data,
            "beta0": beta0.data,
            "temperature": temperature * ntokens,
            "xent_weight": xent_weight * ntokens,
            "ntokens": ntokens,
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs: List[Dict[str, Any]]) -> None:
        def total(key: str) -> float:
            return float(sum(float(log.get(key, 0)) for log in logging_outputs))

        sample_size = total("sample_size")
        ntokens = total("ntokens")
        if sample_size == 0 or ntokens == 0:
            return
        metrics.log_scalar("loss", total("loss") / sample_size / _LN2, sample_size, round=3)
        metrics.log_scalar("distill_loss", total("distill_loss") / sample_size / _LN2, sample_size, round=3)
        metrics.log_scalar("nll_loss", total("nll_loss") / ntokens / _LN2, ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
        metrics.log_scalar("teacher_nll", total("teacher_nll") / ntokens / _LN2, ntokens, round=3)
        metrics.log_scalar("alpha0", total("alpha0") / ntokens, ntokens, round=3)
        metrics.log_scalar("beta0", total("beta0") / ntokens, ntokens, round=3)
        metrics.log_scalar("temperature", total("temperature") / ntokens, ntokens, round=4)
        metrics.log_scalar("xent_weight", total("xent_weight") / ntokens, ntokens, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
