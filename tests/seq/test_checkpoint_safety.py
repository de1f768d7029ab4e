"""Hostile and mismatched teacher checkpoints in ``fairseq-train --task ensemble_distillation`` (issue 11.1, 11.3, 11.9).

The fairseq-train runs stop at start-up (teachers are loaded before the first
batch), so each costs one fairseq process start. The same checks on the
``fairseq-generate --path`` side are in ``test_generate_safety_and_output.py``.
"""

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest
from fairseq.data import Dictionary

from derived_checkpoints import reordered_dictionary_checkpoint, unsafe_cutoff_checkpoint
from endist_seq.checkpoint_safety import (
    EVALUATED_FIELDS,
    CheckpointDictionaryError,
    UnsafeCheckpointError,
    check_checkpoint_config,
    check_checkpoint_dictionaries,
    is_safe_literal,
)
from seq_helpers import distill_cmd, load_checkpoint_state, run, setup_distillation_task


def _one_line_error(proc, *needles: str) -> str:
    """The run failed with one ``error: ...`` line (the last line of stderr) and no traceback."""
    assert proc.returncode != 0, (proc.stdout + proc.stderr)[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in last, f"{needle!r} not in {last!r}"
    return last


def test_teacher_config_that_fairseq_would_eval_runs_no_code(tmp_path, toy_data_bin, teacher_checkpoints):
    marker = tmp_path / "MARKER"
    evil = unsafe_cutoff_checkpoint(teacher_checkpoints[1], tmp_path / "evil.pt", marker)
    proc = run(distill_cmd(toy_data_bin, tmp_path / "save", [teacher_checkpoints[0], evil], max_update=1))
    assert not marker.exists(), "code from the checkpoint's config ran"
    _one_line_error(proc, "--ensemble-paths", str(evil), "cfg.model.adaptive_softmax_cutoff", "not a literal")
    assert not list((tmp_path / "save").glob("*.pt")) if (tmp_path / "save").exists() else True


def test_teacher_trained_on_reordered_dictionary_is_refused(tmp_path, toy_data_bin, teacher_checkpoints):
    """The toy teachers record no languages (``task.source_lang`` None): they are inferred and the symbols compared."""
    reordered = reordered_dictionary_checkpoint(teacher_checkpoints[1], toy_data_bin, tmp_path / "reordered.pt")
    task, cfg = setup_distillation_task(toy_data_bin, [teacher_checkpoints[0], reordered])
    with pytest.raises(CheckpointDictionaryError) as err:
        task.build_criterion(cfg.criterion)
    message = str(err.value)
    assert message.startswith(f"--ensemble-paths: teacher checkpoint {reordered} was trained with a different source")
    assert "first difference at index 4" in message and "\n" not in message
    task, cfg = setup_distillation_task(toy_data_bin, teacher_checkpoints)  # the real teachers still load
    task.build_criterion(cfg.criterion)
    assert len(task.teachers) == len(teacher_checkpoints)


# ---------------------------------------------------------------- in-process checks of the same functions
def _task(data_bin: Path) -> SimpleNamespace:
    return SimpleNamespace(
        source_dictionary=Dictionary.load(str(data_bin / "dict.en.txt")),
        target_dictionary=Dictionary.load(str(data_bin / "dict.de.txt")),
    )


def test_dictionaries_that_cannot_be_found_are_refused_unless_allowed(tmp_path, toy_data_bin, teacher_checkpoints, caplog):
    state = load_checkpoint_state(teacher_checkpoints[0])
    check_checkpoint_dictionaries("t.pt", state, _task(toy_data_bin), "--ensemble-paths")  # the real teacher passes
    state["cfg"]["task"]["data"] = str(tmp_path / "moved_away")
    with pytest.raises(CheckpointDictionaryError, match=r"t\.pt: cannot find the source dictionary .*moved_away"):
        check_checkpoint_dictionaries("t.pt", state, _task(toy_data_bin), "--ensemble-paths")
    check_checkpoint_dictionaries("t.pt", state, _task(toy_data_bin), "--ensemble-paths", allow_unverified=True)
    assert "cannot find the source dictionary" in caplog.text and "checking sizes only" in caplog.text


@pytest.mark.parametrize(
    "text, safe",
    [("[8]", True), ("10000,50000", True), ("[(512, 3)] * 20", True), ("{'name': 'x'}", True), ("-1e-8", True),
     ("True", True), ("(__import__('os').system('x'), [8])[1]", False), ("[0] * 10**9", False),
     ("${task.data}", False), ("open('f')", False), ("[i for i in range(3)]", False), ("x.y", False)],
)
def test_literal_check(text, safe):
    assert is_safe_literal(text) is safe


def test_config_check_walks_every_section_and_legacy_args():
    for where in ("task", "optimizer", "model"):
        for field in ("adam_betas", "decoder_layers", "xformers_att_config"):
            assert field in EVALUATED_FIELDS
            state = {"cfg": {where: {"nested": {field: "__import__('os')"}}}}
            with pytest.raises(UnsafeCheckpointError, match=rf"cfg\.{where}\.nested\.{field}"):
                check_checkpoint_config("c.pt", state, "--path")
    legacy = {"args": argparse.Namespace(arch="fconv", decoder_attention="exec('1')")}
    with pytest.raises(UnsafeCheckpointError, match=r"args\.decoder_attention"):
        check_checkpoint_config("c.pt", legacy, "--path")
    with pytest.raises(UnsafeCheckpointError, match=r"w2v_path .*another checkpoint"):
        check_checkpoint_config("c.pt", {"cfg": {"model": {"w2v_path": "/x/other.pt"}}}, "--path")
    check_checkpoint_config("c.pt", {"cfg": {"model": {"encoder_layers": "[(512, 3)] * 20", "decoder_layers": 6}}}, "--path")
