"""Token-level error detection (issue 14, item 12): Levenshtein labels on hand examples, AUCs, endist-seq-eval report."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from endist_seq.eval_cli import main as eval_main
from endist_seq.token_errors import levenshtein_error_labels, token_error_detection


@pytest.mark.parametrize(
    "hyp, ref, expected",
    [
        ("a b c", "a b c", [False, False, False]),  # identical
        ("a x c", "a b c", [False, True, False]),  # substitution
        ("a b x c", "a b c", [False, False, True, False]),  # insertion
        ("a c", "a b c", [False, False]),  # deletion of a reference token: no hypothesis error
        ("x y", "a b c", [True, True]),  # nothing matches
        ("c a b", "a b c", [True, False, False]),  # shifted: best alignment matches "a b"
        ("", "a b", []),
        ("a a", "a", [True, False]),  # one of the two matches (distance 1)
    ],
)
def test_levenshtein_labels_on_hand_examples(hyp: str, ref: str, expected: list) -> None:
    labels = levenshtein_error_labels(hyp.split(), ref.split())
    assert labels == expected
    # the number of errors plus deleted reference tokens is the edit distance's lower bound: errors ≥ |h| − |r|
    assert sum(labels) >= len(hyp.split()) - len(ref.split())


def test_error_detection_aucs_match_sklearn_and_skip_misfits() -> None:
    hyps = ["a x c", "b b", "q"]
    refs = ["a b c", "b b", "q"]
    good = {"pe_total": [0.1, 0.9, 0.2, 0.3], "pe_confidence": [0.9, 0.2, 0.8, 0.7], "ep_rmi": None}
    measures = [good, {"pe_total": [0.5, 0.4, 0.6], "pe_confidence": [0.4, 0.5, 0.3], "ep_rmi": None}, {"pe_total": [1.0]}]
    res = token_error_detection(hyps, refs, measures)
    # third sentence: 1 value for 2 tokens ("q" + </s>): skipped
    assert res["sentences"] == 2 and res["sentences_skipped"] == 1 and res["tokens"] == 7 and res["errors"] == 1
    y = np.array([0, 1, 0, 0, 0, 0, 0])
    total = np.array([0.1, 0.9, 0.2, 0.3, 0.5, 0.4, 0.6])
    assert res["roc_auc"]["pe_total"] == pytest.approx(roc_auc_score(y, total))
    assert res["pr_auc"]["pe_total"] == pytest.approx(average_precision_score(y, total))
    conf = np.array([0.9, 0.2, 0.8, 0.7, 0.4, 0.5, 0.3])
    assert res["roc_auc"]["pe_confidence"] == pytest.approx(roc_auc_score(y, -conf))  # confidence negated
    assert res["roc_auc"]["ep_rmi"] is None
    assert token_error_detection(["a"], ["a"], [None]) is None


def _write_generate(path: Path) -> None:
    lines = []
    rng = np.random.default_rng(0)
    for i in range(6):
        ref = "a b c d"
        hyp = "a b x d" if i % 2 else "a b c d"
        lines += [f"S-{i}\tsrc", f"T-{i}\t{ref}", f"H-{i}\t-0.5\t{hyp}", f"D-{i}\t-0.5\t{hyp}"]
        err = [0, 0, i % 2, 0, 0]
        total = ",".join(f"{0.1 + e + 0.01 * rng.random():.4f}" for e in err)
        lines.append(f"U-{i}\t0\tscore=-0.5\ttu_pe={0.2 + 0.1 * i}\tpe_total={0.3 * i}\tpe_rmi={0.1 * i}")
        lines.append(f"UT-{i}\t0\tpe_log_prob=-0.1,-0.1,-0.1,-0.1,-0.1\tpe_total={total}\tep_total={total}")
    path.write_text("\n".join(lines) + "\n")


def test_seq_eval_reports_token_error_detection(tmp_path: Path) -> None:
    gen = tmp_path / "gen.txt"
    _write_generate(gen)
    assert eval_main(["--out-dir", str(tmp_path / "out"), "--no-plots", "--id", str(gen)]) == 0
    doc = json.loads((tmp_path / "out" / "seq_eval.json").read_text())
    te = doc["models"]["model"]["token_errors"]
    assert te["tokens"] == 30 and te["errors"] == 3
    assert te["roc_auc"]["pe_total"] == pytest.approx(1.0) and te["roc_auc"]["ep_total"] == pytest.approx(1.0)
    assert te["roc_auc"]["pe_log_prob"] == pytest.approx(0.5)  # constant: ties
    md = (tmp_path / "out" / "seq_eval.md").read_text()
    assert "Token-level error detection" in md and "pe_total ROC / PR" in md and "100.0 /" in md
