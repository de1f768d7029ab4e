"""Task ``translation_uncertainty``: fairseq translation whose ``fairseq-generate`` also reports uncertainty.

Usage (``--user-dir endist_seq``)::

    fairseq-generate DATA --user-dir endist_seq --task translation_uncertainty \\
        --compute-uncertainty --path a.pt:b.pt:c.pt --beam 5 --nbest 5 \\
        [--uncertainty-jsonl out.jsonl] [--nbest-temperature 1.0]

    # Dirichlet student (EnD² / Proxy-EnD²): one checkpoint
    fairseq-generate DATA ... --compute-uncertainty --path student.pt [--model-offset 1.0]

Model kind (``--uncertainty-model``, default ``auto``): several checkpoints →
**ensemble** (or, asked for, **proxy**: their Proxy-Dirichlet target read as a Dirichlet); one checkpoint → **dirichlet** if ``--model-offset`` is given or
the checkpoint was trained with an endist Dirichlet criterion (recorded in its
``task_state`` by :meth:`TranslationUncertaintyTask.build_criterion`, together
with the ``--model-offset`` used in training), else **single**. Measures and
formulas: :mod:`endist_seq.generation.measures`; output format:
:mod:`endist_seq.generation.output` and ``README.md ("Uncertainty in fairseq-generate")``.

How the lines get into fairseq-generate's output without patching fairseq:

* :meth:`build_generator` wraps the generator fairseq would build in
  :class:`~endist_seq.generation.sequence_generator.UncertaintyGenerator`
  (search untouched → identical hypotheses and scores); for the plain
  ``SequenceGenerator`` the models come as
  :class:`~endist_seq.generation.sequence_generator.RecordingEnsembleModel`
  (fairseq's ``EnsembleModel`` that also keeps the encoder outputs and the search's decoder states for the scoring);
* :meth:`inference_step` (called by ``fairseq_cli.generate._main`` once per
  batch, *before* that batch's ``H-`` lines are printed) stores the batch's
  results (formatted only when printed);
* :meth:`get_batch_iterator` wraps the batch iterator so that requesting the
  next batch first prints the previous batch's lines, and exhausting it prints
  the last ones and commits the JSONL file. The ``U-`` lines of a batch thus
  follow that batch's ``H-`` lines, before fairseq's final BLEU line.

Where the lines go (:meth:`TranslationUncertaintyTask.uncertainty_stream`), decided from the
configuration only, through fields that fairseq fills by interpolation from the
root config (``generate_path = II("common_eval.path")``, ``generate_results_path``,
``generate_subset``, ``generate_quiet``; fairseq's own ``II`` mechanism, no flags):

* ``--uncertainty-output FILE`` (``-`` = stdout): that file, written atomically;
* otherwise fairseq-generate's own output: stdout, or with ``--results-path R``
  the file ``R/generate-<subset>.txt``, which fairseq-generate holds open while it
  generates. The lines are appended through a duplicate of fairseq's own file
  descriptor of that file (:class:`~endist_seq.generation.output.SharedOutputFile`,
  found by device/inode among this process's open descriptors), so both share one
  file offset and fairseq's next line follows ours; if no such descriptor is open
  (fairseq called in some other way) the run stops asking for ``--uncertainty-output``;
* nothing with ``--quiet`` or ``--no-uncertainty-lines``, and nothing outside
  fairseq-generate/-interactive (no ``--path``: e.g. validation BLEU during
  training), where the results are still attached to each hypothesis dict.

Before fairseq builds a model from a ``--path`` checkpoint, :meth:`build_model`
checks every ``--path`` checkpoint (:mod:`endist_seq.checkpoint_safety`): no
config field that fairseq ``eval()``s may hold anything but a literal, and the
checkpoint's training dictionaries must be the data's.

Subclasses (``ensemble_distillation``) inherit every flag except
``--model-offset``, which their criterions declare themselves: their config
redeclares ``model_offset`` as ``II("criterion.model_offset")``, which fairseq's
parser generator skips (a field "added elsewhere"), and the value reaches
``cfg.model_offset`` from the shared namespace.
"""

# no "from __future__ import annotations": fairseq reads the config field types at runtime

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from fairseq.dataclass import ChoiceEnum
from fairseq.dataclass.configs import GenerationConfig
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from endist_seq.checkpoint_safety import (
    check_checkpoint_config,
    check_checkpoint_dictionaries,
    check_model_config,
    peek_checkpoint,
    require_weights_only_loading,
)
from endist_seq.errors import FlagError, check_finite_flags, config_value, float_fields
from endist_seq.generation.output import AtomicJsonlWriter, SharedOutputFile, UncertaintyReporter, check_output_path
from endist_seq.generation.scorer import HypothesisScorer
from endist_seq.generation.search_record import DEFAULT_RECORD_MB
from endist_seq.generation.sequence_generator import (
    DirichletMeanModel,
    ExpectationOfProductsEnsembleModel,
    RecordingEnsembleModel,
    UncertaintyGenerator,
)

logger = logging.getLogger(__name__)

UNCERTAINTY_MODEL_CHOICES = ChoiceEnum(["auto", "ensemble", "dirichlet", "proxy", "single"])
NBEST_WEIGHT_CHOICES = ChoiceEnum(["logprob", "score", "uniform"])
ENSEMBLE_COMBINATION_CHOICES = ChoiceEnum(["pe", "ep"])

#: endist criterions whose student outputs Dirichlet concentrations α = exp(z) + model_offset
DIRICHLET_CRITERIONS = frozenset(
    {"sequence_distribution_distillation", "dirichlet_proxy_distillation", "rkl_dirichlet_proxy_distillation"}
)

#: key of the training metadata this task stores in the checkpoint's ``task_state``
STUDENT_STATE_KEY = "endist_student"


@dataclass
class TranslationUncertaintyConfig(TranslationConfig):
    compute_uncertainty: bool = field(
        default=False,
        metadata={"help": "print token- and sequence-level uncertainty (U-/UT-/UW- lines) in fairseq-generate"},
    )
    uncertainty_model: UNCERTAINTY_MODEL_CHOICES = field(  # type: ignore[valid-type]
        default="auto",
        metadata={
            "help": "how to read the --path models: ensemble (several checkpoints), dirichlet (one EnD2/Proxy-EnD2 "
            "student), proxy (several checkpoints read through their Proxy-Dirichlet target beta = mean*precision + 1, "
            "Dirichlet measures), single; auto: ensemble if several, dirichlet if --model-offset is given or the checkpoint "
            "was trained with an endist Dirichlet criterion, else single"
        },
    )
    model_offset: Optional[float] = field(
        default=None,
        metadata={
            "help": "Dirichlet student: alpha = exp(z) + offset, the same value as --model-offset in training "
            "(default: the value recorded in the checkpoint)"
        },
    )
    dirichlet_mean_decoding: bool = field(
        default=False,
        metadata={"help": "Dirichlet student: search with the expected distribution alpha/alpha0 instead of softmax(z)"},
    )
    nbest_temperature: float = field(
        default=1.0, metadata={"help": "temperature T of the n-best weights softmax(log P(y) / T) or softmax(score / T) (UW- lines)"}
    )
    nbest_weights: NBEST_WEIGHT_CHOICES = field(  # type: ignore[valid-type]
        default="logprob",
        metadata={
            "help": "n-best weights of the UW- lines: logprob = softmax of the unnormalised sequence log-probability "
            "sum_l log P(y_l|y<l) / T; score = softmax of fairseq's length-normalised score / T; uniform = plain "
            "average (sampled hypotheses)"
        },
    )
    ensemble_combination: ENSEMBLE_COMBINATION_CHOICES = field(  # type: ignore[valid-type]
        default="pe",
        metadata={
            "help": "how the beam search combines ensemble members: pe = fairseq's uniform average (1/M) sum_m P_m; "
            "ep = expectation of products, sum_m w_m P_m with w_m proportional to P_m(prefix) (needs several "
            "checkpoints and the plain beam search)"
        },
    )
    uncertainty_record_mb: float = field(
        default=DEFAULT_RECORD_MB,
        metadata={
            "help": "memory (MiB per batch) for the search's own decoder states, from which the hypotheses' "
            "distributions are taken (one output-layer product per token); a batch that needs more, and "
            "0, score the hypotheses by teacher forcing them through the decoders again"
        },
    )
    uncertainty_jsonl: Optional[str] = field(
        default=None,
        metadata={"help": "also write one JSON record per sentence to this file (written atomically at the end)"},
    )
    no_uncertainty_lines: bool = field(
        default=False, metadata={"help": "do not print U-/UT-/UW- lines (e.g. with --uncertainty-jsonl only)"}
    )
    uncertainty_output: Optional[str] = field(
        default=None,
        metadata={
            "help": "write the U-/UT-/UW- lines to this file (written atomically at the end; '-' = stdout) "
            "instead of fairseq-generate's output (stdout or --results-path's generate-<subset>.txt)"
        },
    )
    allow_unverified_dictionaries: bool = field(
        default=False,
        metadata={
            "help": "accept a checkpoint (--path, --ensemble-paths) whose training dictionaries cannot be found, "
            "checking only the dictionary sizes (default: refuse it)"
        },
    )
    # filled by interpolation from fairseq's root config (no flags: fairseq's parser skips "${...}" defaults)
    generate_path: Optional[str] = II("common_eval.path")
    generate_results_path: Optional[str] = II("common_eval.results_path")
    generate_subset: Optional[str] = II("dataset.gen_subset")
    generate_quiet: Any = II("common_eval.quiet")
    generate_lm_path: Optional[str] = II("generation.lm_path")


@register_task("translation_uncertainty", dataclass=TranslationUncertaintyConfig)
class TranslationUncertaintyTask(TranslationTask):
    """Translation task whose generator also reports uncertainty (issue #4)."""

    cfg: TranslationUncertaintyConfig

    def __init__(self, cfg: TranslationUncertaintyConfig, src_dict: Any, tgt_dict: Any) -> None:
        super().__init__(cfg, src_dict, tgt_dict)
        require_weights_only_loading()  # before fairseq loads any --path / --ensemble-paths checkpoint
        _validate(cfg)
        #: training metadata of each checkpoint loaded by fairseq, in --path order (None: not recorded)
        self.checkpoint_students: List[Optional[Dict[str, Any]]] = []
        self._reporter: Optional[UncertaintyReporter] = None
        self._checkpoints_checked = False
        self._models_built_from_checkpoints = 0

    # ------------------------------------------------------------------ root-config values
    def _root_value(self, name: str) -> Any:
        """A ``generate_*`` field resolved from fairseq's root config (None where it is not set or not resolvable)."""
        return config_value(self.cfg, name)

    def generate_paths(self) -> List[str]:
        """The ``--path`` checkpoints of fairseq-generate/-interactive (empty outside them)."""
        from fairseq import utils

        spec = self._root_value("generate_path")
        return [p for p in utils.split_paths(spec)] if isinstance(spec, str) and spec else []

    # ------------------------------------------------------------------ checkpoint checks
    def build_model(self, cfg: Any, from_checkpoint: bool = False) -> Any:
        """fairseq's model; for a checkpoint (``--path``), only after :mod:`endist_seq.checkpoint_safety` accepted it."""
        if from_checkpoint:
            self.check_checkpoints_before_build(cfg)
        return super().build_model(cfg, from_checkpoint)

    def check_checkpoints_before_build(self, model_cfg: Any) -> None:
        """Before the first model is built: check every ``--path`` (and ``--lm-path``) checkpoint file
        (config fields fairseq evaluates, training dictionaries); always: the model config fairseq passes in."""
        paths = self.generate_paths()
        if not self._checkpoints_checked:
            self._checkpoints_checked = True
            allow = bool(getattr(self.cfg, "allow_unverified_dictionaries", False))
            for path in paths:
                if os.path.isfile(path):
                    state = peek_checkpoint(path)
                    check_checkpoint_config(path, state, "--path")
                    check_checkpoint_dictionaries(path, state, self, "--path", allow_unverified=allow)
            lm_path = self._root_value("generate_lm_path")
            if isinstance(lm_path, str) and os.path.isfile(lm_path):
                check_checkpoint_config(lm_path, peek_checkpoint(lm_path), "--lm-path")
        k = self._models_built_from_checkpoints
        self._models_built_from_checkpoints += 1
        label = paths[k] if k < len(paths) else f"#{k + 1} (loaded by fairseq)"
        check_model_config(label, model_cfg, "--path")

    # ------------------------------------------------------------------ training metadata
    def build_criterion(self, cfg: Any, from_checkpoint: bool = False) -> Any:
        """Build the criterion and record in the task state whether the student is a Dirichlet (saved in checkpoints)."""
        criterion = super().build_criterion(cfg, from_checkpoint=from_checkpoint)
        name = getattr(cfg, "_name", None) or type(criterion).__name__
        dirichlet = getattr(criterion, "student_is_dirichlet", None)
        if dirichlet is None:
            dirichlet = name in DIRICHLET_CRITERIONS
        offset = getattr(criterion, "model_offset", config_value(cfg, "model_offset"))
        self.state.merge_state_dict(
            {
                STUDENT_STATE_KEY: {
                    "criterion": str(name),
                    "dirichlet": bool(dirichlet),
                    "model_offset": None if offset is None else float(offset),
                }
            }
        )
        return criterion

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Called by fairseq once per loaded checkpoint, before building its model."""
        super().load_state_dict(state_dict)
        meta = state_dict.get(STUDENT_STATE_KEY) if isinstance(state_dict, dict) else None
        self.checkpoint_students.append(dict(meta) if isinstance(meta, dict) else None)

    # ------------------------------------------------------------------ generation
    def resolve_model_kind(self, num_models: int) -> tuple:
        """``(kind, model_offset)`` for the ``num_models`` checkpoints of ``--path`` (see module docstring)."""
        requested = str(getattr(self.cfg, "uncertainty_model", "auto"))
        flag_offset = config_value(self.cfg, "model_offset")
        metas = self.checkpoint_students[-num_models:] if len(self.checkpoint_students) >= num_models else []
        meta = metas[0] if num_models == 1 and metas else None
        recorded = meta.get("model_offset") if meta and meta.get("dirichlet") else None
        if requested == "auto":
            if num_models > 1:
                kind = "ensemble"
            elif flag_offset is not None or (meta is not None and meta.get("dirichlet")):
                kind = "dirichlet"
            else:
                kind = "single"
        else:
            kind = requested
        if kind in ("ensemble", "proxy") and num_models < 2:
            raise FlagError(f"--uncertainty-model {kind} needs several checkpoints in --path (a.pt:b.pt), got {num_models}")
        if kind in ("dirichlet", "single") and num_models != 1:
            raise FlagError(f"--uncertainty-model {kind} needs exactly one checkpoint in --path, got {num_models}")
        if getattr(self.cfg, "dirichlet_mean_decoding", False) and kind != "dirichlet":
            raise FlagError(f"--dirichlet-mean-decoding needs a Dirichlet student, but the models are read as {kind!r}")
        offset = 0.0
        if kind == "dirichlet":
            if flag_offset is not None:
                offset = float(flag_offset)
                if recorded is not None and abs(recorded - offset) > 1e-12:
                    logger.warning(
                        "--model-offset %g differs from the value recorded in the checkpoint (%g); using %g",
                        offset, recorded, offset,
                    )
            elif recorded is not None:
                offset = float(recorded)
            else:
                raise FlagError(
                    "--uncertainty-model dirichlet: give --model-offset (the value used in training); "
                    "the checkpoint has no endist training record"
                )
        return kind, offset

    def build_generator(
        self,
        models: List[Any],
        args: Any,
        seq_gen_cls: Any = None,
        extra_gen_cls_kwargs: Optional[Dict[str, Any]] = None,
        prefix_allowed_tokens_fn: Any = None,
    ) -> Any:
        """fairseq's generator, wrapped to score its n-best hypotheses when ``--compute-uncertainty``."""
        if not getattr(self.cfg, "compute_uncertainty", False):
            return super().build_generator(
                models, args, seq_gen_cls=seq_gen_cls, extra_gen_cls_kwargs=extra_gen_cls_kwargs,
                prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
            )
        kind, offset = self.resolve_model_kind(len(models))
        # α = exp(z) + c or softplus(z) + c as recorded in training (issue 14.8; "exp" for older checkpoints)
        meta = (self.checkpoint_students[-1] or {}) if kind == "dirichlet" and self.checkpoint_students else {}
        parametrization = str(meta.get("parametrization") or "exp")
        search_models = list(models)
        if getattr(self.cfg, "dirichlet_mean_decoding", False):
            search_models = [DirichletMeanModel(models[0], offset)]
            search_models[0].parametrization = parametrization
        generator_models: Any = search_models
        plain_search = seq_gen_cls is None and not getattr(args, "print_alignment", None) and not getattr(args, "score_reference", False)
        combination = str(getattr(self.cfg, "ensemble_combination", "pe"))
        record_bytes = int(float(getattr(self.cfg, "uncertainty_record_mb", DEFAULT_RECORD_MB)) * 2**20)
        if combination == "ep":
            if len(models) < 2:
                raise FlagError(f"--ensemble-combination ep needs several checkpoints in --path, got {len(models)}")
            if not plain_search:
                raise FlagError("--ensemble-combination ep works with the plain beam search only "
                                "(not with --score-reference or --print-alignment)")
            generator_models = ExpectationOfProductsEnsembleModel(search_models, record_bytes=record_bytes)
        elif plain_search:
            # plain SequenceGenerator: give it fairseq's EnsembleModel subclass that keeps the encoder
            # outputs and the search's decoder states, so the scoring runs neither the encoders nor
            # the decoders a second time
            generator_models = RecordingEnsembleModel(search_models, record_bytes=record_bytes)
        check_finite_flags(args, float_fields(GenerationConfig))
        inner = super().build_generator(
            generator_models, args, seq_gen_cls=seq_gen_cls, extra_gen_cls_kwargs=extra_gen_cls_kwargs,
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        )
        scorer = HypothesisScorer(
            models,
            kind,
            pad=self.target_dictionary.pad(),
            eos=self.target_dictionary.eos(),
            model_offset=offset,
            temperature=float(getattr(args, "temperature", 1.0)),
            nbest_temperature=float(self.cfg.nbest_temperature),
            nbest_weights=str(getattr(self.cfg, "nbest_weights", "logprob")),
        )
        scorer.parametrization = parametrization
        logger.info(
            "uncertainty: %s (%d member%s%s), measures in nats",
            kind, len(models), "s" if len(models) > 1 else "",
            f", model offset {offset:g}" if kind == "dirichlet" else "",
        )
        return UncertaintyGenerator(inner, scorer, nbest=int(getattr(args, "nbest", 1)), search_models=search_models)

    def inference_step(self, generator: Any, models: List[Any], sample: Dict[str, Any], prefix_tokens: Any = None, constraints: Any = None) -> Any:
        hypos = super().inference_step(generator, models, sample, prefix_tokens=prefix_tokens, constraints=constraints)
        if isinstance(generator, UncertaintyGenerator):
            reporter = self._get_reporter()
            if reporter is not None:
                self._report(reporter, generator, sample, hypos)
        return hypos

    def get_batch_iterator(self, *args: Any, **kwargs: Any) -> Any:
        epoch_iter = super().get_batch_iterator(*args, **kwargs)
        if getattr(self.cfg, "compute_uncertainty", False):
            return _ReportingEpochIterator(epoch_iter, self)
        return epoch_iter

    # ------------------------------------------------------------------ output
    def _get_reporter(self) -> Optional[UncertaintyReporter]:
        """The reporter of this run, created on the first batch (see the module docstring for the stream)."""
        if self._reporter is not None:
            return None if self._reporter.closed else self._reporter
        stream = self.uncertainty_stream()
        jsonl = AtomicJsonlWriter(self.cfg.uncertainty_jsonl) if self.cfg.uncertainty_jsonl else None
        if stream is None and jsonl is None:
            return None
        self._reporter = UncertaintyReporter(stream, jsonl)
        return self._reporter

    def uncertainty_stream(self) -> Any:
        """Where the ``U-``/``UT-``/``UW-`` lines go: ``--uncertainty-output``, else fairseq-generate's output."""
        if not self.generate_paths() or self.cfg.no_uncertainty_lines:
            return None  # not fairseq-generate/-interactive (e.g. validation during training), or lines off
        output = getattr(self.cfg, "uncertainty_output", None)
        if output == "-":
            return sys.stdout
        if output:
            return AtomicJsonlWriter(output, "--uncertainty-output")
        if self._root_value("generate_quiet"):
            return None
        results = self._root_value("generate_results_path")
        if results is None:
            return sys.stdout  # fairseq-generate prints to sys.stdout without --results-path
        return SharedOutputFile.of_open_file(
            os.path.join(results, f"generate-{self._root_value('generate_subset')}.txt"), "--results-path"
        )

    def _report(self, reporter: UncertaintyReporter, generator: UncertaintyGenerator, sample: Dict[str, Any], hypos: Any) -> None:
        tgt_dict = self.target_dictionary
        target = sample.get("target")
        sentences = generator.last_uncertainty

        def strings() -> tuple:
            texts = [[tgt_dict.string(hypos[i][h.rank]["tokens"]) for h in sent.hypotheses] for i, sent in enumerate(sentences)]
            refs = [None if target is None else tgt_dict.string(target[i]) for i in range(len(sentences))]
            return texts, refs

        reporter.add_batch(sample["id"].tolist(), sentences, strings)

    def flush_uncertainty_output(self) -> None:
        """Write the pending lines of the last batch (called before the next batch is fetched)."""
        if self._reporter is not None:
            self._reporter.flush()

    def close_uncertainty_output(self) -> None:
        """Write the last lines and commit the JSONL file (called when the batch iterator is exhausted)."""
        if self._reporter is not None:
            self._reporter.close()


def _validate(cfg: Any) -> None:
    """Reject bad flag values early, naming the flag (:class:`~endist_seq.errors.FlagError`)."""
    check_finite_flags(cfg, float_fields(TranslationUncertaintyConfig))
    compute = bool(getattr(cfg, "compute_uncertainty", False))
    temp = getattr(cfg, "nbest_temperature", 1.0)
    if temp is not None and not float(temp) > 0:
        raise FlagError(f"--nbest-temperature must be > 0, got {temp}")
    offset = config_value(cfg, "model_offset")
    if offset is not None and float(offset) < 0:
        raise FlagError(f"--model-offset must be >= 0, got {offset}")
    for flag, attr in (
        ("--uncertainty-jsonl", "uncertainty_jsonl"),
        ("--uncertainty-output", "uncertainty_output"),
        ("--dirichlet-mean-decoding", "dirichlet_mean_decoding"),
        ("--no-uncertainty-lines", "no_uncertainty_lines"),
    ):
        if getattr(cfg, attr, None) and not compute:
            raise FlagError(f"{flag} needs --compute-uncertainty")
    if compute and str(getattr(cfg, "uncertainty_model", "auto")) not in ("auto", "ensemble", "dirichlet", "proxy", "single"):
        raise FlagError(f"--uncertainty-model must be auto, ensemble, dirichlet, proxy or single, got {cfg.uncertainty_model}")
    record_mb = getattr(cfg, "uncertainty_record_mb", DEFAULT_RECORD_MB)
    if record_mb is not None and not float(record_mb) >= 0:
        raise FlagError(f"--uncertainty-record-mb must be >= 0, got {record_mb}")
    if str(getattr(cfg, "ensemble_combination", "pe")) not in ("pe", "ep"):
        raise FlagError(f"--ensemble-combination must be pe or ep, got {cfg.ensemble_combination}")
    if str(getattr(cfg, "ensemble_combination", "pe")) == "ep" and not compute:
        raise FlagError("--ensemble-combination ep needs --compute-uncertainty")
    if str(getattr(cfg, "nbest_weights", "logprob")) not in ("logprob", "score", "uniform"):
        raise FlagError(f"--nbest-weights must be logprob, score or uniform, got {cfg.nbest_weights}")
    for flag, attr in (("--uncertainty-jsonl", "uncertainty_jsonl"), ("--uncertainty-output", "uncertainty_output")):
        path = getattr(cfg, attr, None)
        if path and path != "-":
            check_output_path(path, flag)


class _ReportingIterator:
    """Batch iterator that prints the previous batch's uncertainty before yielding the next batch."""

    def __init__(self, inner: Any, task: TranslationUncertaintyTask) -> None:
        self._inner = inner
        self._task = task

    def __len__(self) -> int:
        return len(self._inner)

    def __iter__(self) -> "_ReportingIterator":
        return self

    def __next__(self) -> Any:
        self._task.flush_uncertainty_output()
        try:
            return next(self._inner)
        except StopIteration:
            self._task.close_uncertainty_output()
            raise

    def __getattr__(self, name: str) -> Any:  # n, has_next, skip, take, ...
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


class _ReportingEpochIterator:
    """Proxy of fairseq's epoch iterator whose ``next_epoch_itr`` returns a :class:`_ReportingIterator`."""

    def __init__(self, inner: Any, task: TranslationUncertaintyTask) -> None:
        self._inner = inner
        self._task = task

    def next_epoch_itr(self, *args: Any, **kwargs: Any) -> _ReportingIterator:
        return _ReportingIterator(self._inner.next_epoch_itr(*args, **kwargs), self._task)

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)
