"""NaN/Inf values of endist's float flags are refused, naming the flag (issue 11.8, seq side).

In-process for every float field of the task and criterion configs (each check is
what the task/criterion constructor runs); fairseq-generate's side (``--model-offset nan``,
``--nbest-temperature inf``, ``--lenpen nan``) is in ``test_generate_safety_and_output.py``,
and the one-line ``error:`` ending of a fairseq tool in ``test_checkpoint_safety.py``.
"""

import math
from dataclasses import replace

import pytest

from endist_seq.criterions._distillation_base import validate_common
from endist_seq.criterions.sequence_distribution_distillation import SequenceDistributionDistillationConfig
from endist_seq.errors import EndistUserError, FlagError, float_fields
from endist_seq.tasks.ensemble_distillation import EnsembleDistillationConfig, build_schedule
from endist_seq.tasks.translation_uncertainty import TranslationUncertaintyConfig, _validate
from seq_helpers import setup_distillation_task

TASK_FLOATS = sorted(set(float_fields(EnsembleDistillationConfig)) | set(float_fields(TranslationUncertaintyConfig)))
CRITERION_FLOATS = float_fields(SequenceDistributionDistillationConfig)


def test_every_float_flag_is_covered():
    assert {"init_temp", "final_temp", "nbest_temperature", "model_offset"} <= set(TASK_FLOATS)
    assert {"model_offset", "target_offset", "xent_weight", "label_smoothing", "central_smoothing"} <= set(CRITERION_FLOATS)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", TASK_FLOATS)
def test_task_float_flags(name, value):
    base = TranslationUncertaintyConfig if name in float_fields(TranslationUncertaintyConfig) else EnsembleDistillationConfig
    cfg = replace(base(), **{name: value})
    with pytest.raises(FlagError, match=f"--{name.replace('_', '-')} must be a finite number"):
        _validate(cfg) if base is TranslationUncertaintyConfig else build_schedule(cfg)


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("name", CRITERION_FLOATS)
def test_criterion_float_flags(name, value):
    cfg = replace(SequenceDistributionDistillationConfig(sentence_avg=False), **{name: value})
    with pytest.raises(FlagError, match=f"--{name.replace('_', '-')} must be a finite number"):
        validate_common(cfg)
    validate_common(SequenceDistributionDistillationConfig(sentence_avg=False))  # defaults pass
    assert issubclass(FlagError, EndistUserError) and issubclass(FlagError, ValueError)


@pytest.mark.parametrize("flag", ["--init-temp", "--final-temp", "--model-offset", "--target-offset", "--xent-weight"])
def test_fairseq_train_parsing_refuses_nan(flag, toy_data_bin, teacher_checkpoints):
    """fairseq-train's own parsing and setup, in-process: the task or criterion refuses the value, naming the flag."""
    with pytest.raises(FlagError, match=f"^{flag} must be a finite number, got nan$"):
        task, cfg = setup_distillation_task(toy_data_bin, teacher_checkpoints, flag, "nan")
        task.build_criterion(cfg.criterion)
