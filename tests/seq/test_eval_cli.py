"""``endist-seq-eval`` on crafted generate outputs with known answers."""

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from endist_seq.eval_cli import main as eval_main
from seq_helpers import run, tool

REF = "the quick brown fox jumps over the lazy dog today"
WORDS = REF.split()


def _hypothesis(k: int) -> str:
    """Reference with the last ``k`` words replaced: sentence BLEU decreases with k."""
    return " ".join(WORDS[: len(WORDS) - k] + ["zz"] * k)


def _write(path: Path, rows: List[Dict[str, Optional[float]]], hyps: List[str]) -> None:
    lines = []
    for i, (row, hyp) in enumerate(zip(rows, hyps)):
        lines += [f"S-{i}\tsource {i}", f"T-{i}\t{REF}", f"H-{i}\t-1.0\t{hyp}", f"D-{i}\t-1.0\t{hyp}"]
        pairs = "\t".join(f"{k}={'undefined' if v is None else repr(v)}" for k, v in row.items())
        lines.append(f"U-{i}\t0\t{pairs}")
        lines.append(f"UW-{i}\tT=1\t{pairs}")
    lines.append("Generate test with beam=4: BLEU4 = 0.0")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def crafted(tmp_path: Path) -> Dict[str, object]:
    ks = [0, 3, 1, 6, 2, 9, 4, 7, 5, 8]  # shuffled so file order says nothing
    hyps = [_hypothesis(k) for k in ks]
    error = np.array([100 - BLEU(effective_order=True).sentence_score(h, [REF]).score for h in hyps])
    assert len(set(error.round(6))) == len(ks)  # distinct errors: the oracle order is unique
    rows = [
        {"score": -float(e), "perfect": float(e), "perverse": -float(e), "ku_pe": None} for e in error
    ]
    id_path = tmp_path / "id.txt"
    _write(id_path, rows, hyps)
    # OOD: every measure larger than any in-domain value (perfect detection); "perverse" smaller
    ood_rows = [{"score": -500.0 - i, "perfect": 500.0 + i, "perverse": -500.0 - i, "ku_pe": None} for i in range(6)]
    ood_path = tmp_path / "ood.txt"
    _write(ood_path, ood_rows, ["x"] * 6)
    return {"id": id_path, "ood": ood_path, "hyps": hyps, "out": tmp_path / "report"}


def test_known_answers_prr_and_auroc(crafted: Dict[str, object]) -> None:
    rc = eval_main(["--out-dir", str(crafted["out"]), "--headline", "EoE=perfect,RMI=ku_pe",
                    "--model", "crafted", "--id", str(crafted["id"]), "--ood", f"far={crafted['ood']}"])
    assert rc == 0
    out = Path(crafted["out"])  # type: ignore[arg-type]
    doc = json.loads((out / "seq_eval.json").read_text())
    res = doc["models"]["crafted"]
    assert res["prr"]["perfect"] == pytest.approx(1.0)
    assert res["prr"]["score"] == pytest.approx(1.0)  # confidence: −score is the uncertainty
    assert res["prr"]["perverse"] == pytest.approx(-1.0)
    assert res["prr"]["ku_pe"] is None  # undefined stays undefined
    far = res["ood"]["far"]
    assert far["roc_auc"]["perfect"] == 1.0 and far["pr_auc"]["perfect"] == pytest.approx(1.0)
    assert far["roc_auc"]["score"] == 1.0 and far["roc_auc"]["perverse"] == 0.0
    expected_bleu = BLEU().corpus_score(crafted["hyps"], [[REF] * 10]).score  # type: ignore[arg-type]
    assert res["bleu"] == pytest.approx(expected_bleu)
    md = (out / "seq_eval.md").read_text()
    assert "| crafted | " + f"{expected_bleu:.1f} | 100.0 | - |" in md  # Table 3 row: BLEU, PRR EoE, PRR RMI
    assert "| crafted | 100.0 | - |" in md  # Table 4 row: ROC-AUC EoE, RMI
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["crafted_perfect_hist.png", "crafted_rejection.png"]
    assert all((out / p).stat().st_size > 1000 for p in pngs)


def test_weighted_aggregate_and_two_models(crafted: Dict[str, object]) -> None:
    rc = eval_main(["--out-dir", str(crafted["out"]), "--no-plots", "--aggregate", "weighted", "--headline", "U=perfect",
                    "--model", "a", "--id", str(crafted["id"]), "--model", "b", "--id", str(crafted["id"]),
                    "--ood", f"far={crafted['ood']}"])
    assert rc == 0
    doc = json.loads((Path(crafted["out"]) / "seq_eval.json").read_text())  # type: ignore[arg-type]
    assert doc["aggregate"] == "weighted" and set(doc["models"]) == {"a", "b"}
    assert doc["models"]["a"]["ood"] == {} and doc["models"]["b"]["ood"]["far"]["roc_auc"]["perfect"] == 1.0


def test_bad_inputs_fail_with_clear_errors(crafted: Dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    assert eval_main(["--out-dir", str(out), "--id", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: no such file" in capsys.readouterr().err
    plain = tmp_path / "plain.txt"
    plain.write_text(f"T-0\t{REF}\nH-0\t-1\t{REF}\nD-0\t-1\t{REF}\n")
    assert eval_main(["--out-dir", str(out), "--id", str(plain)]) == 2
    assert "no uncertainty lines" in capsys.readouterr().err
    assert eval_main(["--out-dir", str(out), "--id", str(crafted["id"]), "--ood", "nofile"]) == 2
    assert "--ood expects NAME=FILE" in capsys.readouterr().err
    assert eval_main(["--out-dir", str(out), "--id", str(crafted["id"]), "--headline", "X=nonexistent"]) == 2
    assert "has no measure(s) ['nonexistent']" in capsys.readouterr().err
    assert not out.exists()  # nothing written on error
    # the installed console script: same error, non-zero exit
    proc = run([tool("endist-seq-eval"), "--out-dir", out, "--model", "m", "--id", tmp_path / "missing.txt"])
    assert proc.returncode == 2 and "--model m:" in proc.stderr and "missing.txt: no such file" in proc.stderr
