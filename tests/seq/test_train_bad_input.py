"""Bad input to ``fairseq-train --task ensemble_distillation``: clear error naming the culprit, non-zero exit, no checkpoint."""

from pathlib import Path

from seq_helpers import MODEL_ARGS, check, distill_cmd, run, tool


def _fails(proc, *needles: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for needle in needles:
        assert needle in out, f"{needle!r} not in output:\n{out[-3000:]}"
    return out


def _no_checkpoint(save_dir: Path) -> None:
    assert not list(save_dir.glob("*.pt")), list(save_dir.iterdir())


def test_missing_teacher_checkpoint(tmp_path, toy_data_bin, teacher_checkpoints):
    missing = tmp_path / "nowhere" / "teacher9.pt"
    save = tmp_path / "save"
    proc = run(distill_cmd(toy_data_bin, save, [teacher_checkpoints[0], missing], max_update=5))
    _fails(proc, f"teacher checkpoint {missing} does not exist", "--ensemble-paths")
    # endist's own error: one line, no traceback (endist_seq.errors)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --ensemble-paths: teacher checkpoint")
    assert "Traceback" not in proc.stderr
    _no_checkpoint(save) if save.exists() else None


def test_unreadable_teacher_checkpoint(tmp_path, toy_data_bin, teacher_checkpoints):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(teacher_checkpoints[0].read_bytes()[:5000])  # truncated copy
    save = tmp_path / "save"
    proc = run(distill_cmd(toy_data_bin, save, [teacher_checkpoints[0], broken], max_update=5))
    _fails(proc, f"cannot read teacher checkpoint {broken}")
    _no_checkpoint(save) if save.exists() else None


def test_teacher_with_different_dictionary(tmp_path, toy_data_bin, teacher_checkpoints):
    """A real teacher trained in the other direction (de→en): its source dictionary is the student's target one."""
    wrong = tmp_path / "wrong_direction"
    check(
        run(
            [
                tool("fairseq-train"), toy_data_bin, "--user-dir", "endist_seq", "--task", "translation",
                "--source-lang", "de", "--target-lang", "en", "--cpu", "--num-workers", "0", *MODEL_ARGS,
                "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "64", "--max-update", "1",
                "--disable-validation", "--save-dir", wrong, "--no-epoch-checkpoints", "--data-buffer-size", "0",
            ]
        )
    )
    bad = wrong / "checkpoint_last.pt"
    save = tmp_path / "save"
    proc = run(distill_cmd(toy_data_bin, save, [teacher_checkpoints[0], bad], max_update=5))
    _fails(proc, f"teacher checkpoint {bad} was trained with a different source dictionary", "dict.de.txt")
    _no_checkpoint(save) if save.exists() else None


def test_bad_criterion_options(tmp_path, toy_data_bin, teacher_checkpoints):
    save = tmp_path / "save"
    proc = run(
        distill_cmd(
            toy_data_bin, save, teacher_checkpoints, "rkl_dirichlet_proxy_distillation",
            ["--target-concentration", "median"], max_update=5,
        )
    )
    _fails(proc, "--target-concentration: invalid choice: 'median'", "'mkl'", "'epkl'")
    assert not save.exists()


def test_unknown_criterion_option(tmp_path, toy_data_bin, teacher_checkpoints):
    save = tmp_path / "save"
    proc = run(distill_cmd(toy_data_bin, save, teacher_checkpoints, extra=["--no-such-distillation-flag", "3"]))
    _fails(proc, "unrecognized arguments: --no-such-distillation-flag 3")
    assert not save.exists()


def test_bad_option_value(tmp_path, toy_data_bin, teacher_checkpoints):
    save = tmp_path / "save"
    proc = run(distill_cmd(toy_data_bin, save, teacher_checkpoints, extra=["--xent-weight", "-1"], max_update=5))
    _fails(proc, "--xent-weight must be >= 0, got -1")
    _no_checkpoint(save) if save.exists() else None
