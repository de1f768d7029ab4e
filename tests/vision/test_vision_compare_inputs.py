"""``endist-vision compare`` on bad inputs (issue 11 items 9 and 10): a corrupt or foreign eval.json /
uncertainty_map.npz is one line naming the file (was a traceback), a pickled npz runs no code, a label given
twice is an error naming it (was silently merged), and nothing is written when any input is bad."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from vision_helpers import run_cli

TEST = {"error": 12.5, "prr_confidence": 0.61, "ece": 0.021, "nll": 0.41, "calibrated_nll": 0.4, "brier": 0.18}


def _eval_dir(d: Path, error: float = 12.5, grid: bool = True) -> Path:
    """An eval directory as ``endist-vision evaluate`` leaves it (the keys compare reads)."""
    d.mkdir(parents=True)
    res = {"kind": "ensemble", "test": {**TEST, "error": error},
           "ood": {"ring": {"total_roc_auc": 0.9, "knowledge_roc_auc": None}},
           "shift": {"C": {"n": 10, "mean": {"error": 30.0, "ece": 0.1, "nll": 1.2}}}}
    (d / "eval.json").write_text(json.dumps(res))
    if grid:
        g = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
        np.savez(d / "uncertainty_map.npz", total=g, data=g / 2, mutual_information=g / 3, extent=np.float64(2.5))
    return d


def test_valid_inputs_make_tables_and_maps(tmp_path: Path) -> None:
    a, b = _eval_dir(tmp_path / "a", 12.5), _eval_dir(tmp_path / "b", 7.25)
    code, out, err = run_cli("compare", f"Ensm={a}", f"EnD2={b / 'eval.json'}", "--out", tmp_path / "rep", "--maps")
    assert code == 0, err
    md = (tmp_path / "rep" / "tables.md").read_text()
    assert "| Crit. | Ensm | EnD2 |" in md and "| ERR | 12.50 | 7.25 |" in md and "| C ERR | 30.00 | 30.00 |" in md
    assert (tmp_path / "rep" / "uncertainty_maps.png").stat().st_size > 0


@pytest.mark.parametrize("content, needle", [
    (b"{\"test\": {\"error\": 1", "cannot read eval.json: JSONDecodeError"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "cannot read eval.json"),
    (b"[1, 2, 3]", "not an endist-vision eval.json"),
    (json.dumps({"models": {"t1": {"bleu": 30.1}}}).encode(), "not an endist-vision eval.json"),  # a seq_eval.json
    (json.dumps({"test": {**TEST, "nll": "low"}}).encode(), "test.nll = 'low' is not a number"),
    (json.dumps({"test": TEST, "ood": {"x": [0.9]}}).encode(), "ood.x is list"),
    (json.dumps({"test": TEST, "shift": ["C"]}).encode(), "shift is list"),
])
def test_corrupt_or_foreign_eval_json(tmp_path: Path, content: bytes, needle: str) -> None:
    a = _eval_dir(tmp_path / "a")
    bad = _eval_dir(tmp_path / "bad")
    (bad / "eval.json").write_bytes(content)
    code, out, err = run_cli("compare", f"A={a}", f"B={bad}", "--out", tmp_path / "rep")
    assert code == 2 and err.count("\n") == 1 and str(bad / "eval.json") in err and needle in err, err
    assert not (tmp_path / "rep").exists() and out == ""


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


def test_corrupt_foreign_or_pickled_uncertainty_map(tmp_path: Path) -> None:
    a = _eval_dir(tmp_path / "a")
    bad = _eval_dir(tmp_path / "bad")
    npz = bad / "uncertainty_map.npz"
    g = np.zeros((4, 4), np.float32)
    marker = tmp_path / "PWNED"
    cases = [
        (lambda: npz.write_bytes(b"PK\x03\x04 truncated zip"), "cannot read uncertainty map"),
        (lambda: np.savez(npz, weights=g), "not an uncertainty map (missing total, data, mutual_information, extent"),
        (lambda: np.savez(npz, total=g, data=np.zeros((3, 4)), mutual_information=g, extent=2.5), "data must be a 2-D numeric grid"),
        (lambda: np.savez(npz, total=g, data=g, mutual_information=g, extent=np.nan), "extent must be one finite number"),
        (lambda: np.savez(npz, total=g, data=g, mutual_information=np.array([_Payload(marker)], dtype=object), extent=2.5),
         "cannot read uncertainty map"),
    ]
    for write, needle in cases:
        write()
        code, out, err = run_cli("compare", f"A={a}", f"B={bad}", "--out", tmp_path / "rep", "--maps")
        assert code == 2 and err.count("\n") == 1 and str(npz) in err and needle in err, (needle, err)
        assert not (tmp_path / "rep").exists() and not marker.exists()


def test_duplicate_label_is_an_error_naming_it(tmp_path: Path) -> None:
    a, b = _eval_dir(tmp_path / "a", 12.5), _eval_dir(tmp_path / "b", 7.25)
    code, out, err = run_cli("compare", f"EnD2={a}", f"Ensm={b}", f"EnD2={b}", "--out", tmp_path / "rep")
    assert code == 2 and err.count("\n") == 1 and "'EnD2' is given twice" in err and str(a) in err and str(b) in err
    assert not (tmp_path / "rep").exists()
    for item in ("=x", f"A{a}", "A="):
        code, _, err = run_cli("compare", item)
        assert code == 2 and "expected LABEL=EVAL_DIR" in err


def test_single_model_map_without_knowledge_grid_is_drawn_blank(tmp_path: Path) -> None:
    from endist_vision.report import read_uncertainty_map

    d = tmp_path / "single"
    d.mkdir()
    g = np.ones((3, 3), np.float32)
    np.savez(d / "uncertainty_map.npz", total=g, data=g * 0.5, extent=2.0)
    m = read_uncertainty_map(d / "uncertainty_map.npz")
    assert np.isnan(m["mutual_information"]).all() and m["mutual_information"].shape == (3, 3)
    assert np.array_equal(m["data"], g * 0.5) and m["extent"] == 2.0
