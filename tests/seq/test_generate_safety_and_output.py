"""``fairseq-generate --task translation_uncertainty``: hostile ``--path`` checkpoints, non-finite flags,
and ``--uncertainty-output`` (issue 11.1, 11.3, 11.8; issue 12, seq side).

All generations run in one batch process (``generate_batch.py``).
"""

from pathlib import Path
from typing import Dict, List

import pytest

from derived_checkpoints import reordered_dictionary_checkpoint, unsafe_cutoff_checkpoint
from endist_seq.generation.parse import read_generate_output
from generate_fixtures import results_file, run_generate_batch, uncertainty_args


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory, toy_data_bin: Path, teacher_checkpoints: List[Path]) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("gen_safety")
    a, b = teacher_checkpoints[:2]
    marker = root / "MARKER"
    evil = unsafe_cutoff_checkpoint(b, root / "evil.pt", marker)
    reordered = reordered_dictionary_checkpoint(b, toy_data_bin, root / "reordered.pt")
    out = {name: root / name for name in ("evil", "reordered", "offset_nan", "temp_inf", "lenpen_nan", "to_file", "record_negative")}
    runs = [
        {"args": uncertainty_args(toy_data_bin, [a, evil], "test", out["evil"]),
         "expect_error": "adaptive_softmax_cutoff"},
        {"args": uncertainty_args(toy_data_bin, [a, reordered], "test", out["reordered"]),
         "expect_error": "different source dictionary"},
        {"args": uncertainty_args(toy_data_bin, [a], "test", out["offset_nan"], "--model-offset", "nan"),
         "expect_error": "--model-offset must be a finite number"},
        {"args": uncertainty_args(toy_data_bin, [a, b], "test", out["temp_inf"], "--nbest-temperature", "inf"),
         "expect_error": "--nbest-temperature must be a finite number"},
        {"args": uncertainty_args(toy_data_bin, [a, b], "test", out["lenpen_nan"], "--lenpen", "nan"),
         "expect_error": "--lenpen must be a finite number"},
        {"args": uncertainty_args(toy_data_bin, [a, b], "test", out["record_negative"], "--uncertainty-record-mb", "-1"),
         "expect_error": "--uncertainty-record-mb must be >= 0, got -1"},
        uncertainty_args(toy_data_bin, [a, b], "test", out["to_file"], "--nbest", "2",
                         "--uncertainty-output", str(root / "lines.txt")),
    ]
    run_generate_batch(runs, root)
    return {**out, "root": root, "marker": marker, "evil_path": evil, "reordered_path": reordered}


def _error(gen: Dict[str, Path], name: str) -> str:
    return (gen[name] / "error.txt").read_text()


def test_unsafe_path_checkpoint_runs_no_code(gen):
    assert not gen["marker"].exists(), "code from the checkpoint's config ran"
    error = _error(gen, "evil")
    assert f"--path: checkpoint {gen['evil_path']}" in error and "cfg.model.adaptive_softmax_cutoff" in error
    assert "\n" not in error.strip()


def test_path_checkpoint_with_reordered_dictionary_is_refused(gen):
    error = _error(gen, "reordered")
    assert str(gen["reordered_path"]) in error and "first difference at index 4" in error


def test_non_finite_generation_flags_are_refused(gen):
    assert "got nan" in _error(gen, "offset_nan")
    assert "got inf" in _error(gen, "temp_inf")
    assert "got nan" in _error(gen, "lenpen_nan")


def test_uncertainty_output_file(gen):
    """``--uncertainty-output FILE``: every sentence's lines in FILE (atomically), none in fairseq's output."""
    lines = (gen["root"] / "lines.txt").read_text().splitlines()
    fairseq_out = results_file(gen["to_file"], "test").read_text().splitlines()
    assert not [line for line in fairseq_out if line.startswith(("U-", "UT-", "UW-"))]
    h_ids = {int(line.split("\t")[0][2:]) for line in fairseq_out if line.startswith("H-")}
    u_ranks = {}
    for line in lines:
        head, rank = line.split("\t")[:2]
        if head.startswith("U-"):
            u_ranks.setdefault(int(head[2:]), set()).add(int(rank))
    assert h_ids and set(u_ranks) == h_ids and all(r == {0, 1} for r in u_ranks.values())
    assert sum(line.startswith("UW-") for line in lines) == len(h_ids)
    assert not list(gen["root"].glob(".lines.txt.*.partial"))
    # the H-/T- lines of fairseq's file and the U- lines of the separate file make one readable output
    merged = gen["root"] / "merged.txt"
    merged.write_text("\n".join(fairseq_out + lines) + "\n")
    sentences = read_generate_output(str(merged), require_references=True)
    assert len(sentences) == len(h_ids) and all(s.measures[0]["tu_pe"] > 0 for s in sentences)
