"""The README's machine-translation commands, run as written on the toy corpus (see ``tests/readme_blocks.py``).

Placeholders: ``DATA_BIN`` -> the toy data-bin, ``t1.pt``/``t2.pt`` -> the two toy teachers (the README lists three;
the renames drop ``t3.pt``), ``student/`` -> the toy Proxy-EnD² student, ``test.en``/``test.de`` -> the toy test
set. Smoke arguments appended by the prelude: CPU, no prefetch thread, a tiny transformer, 2 updates.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from readme_blocks import block, run_block  # noqa: E402
from seq_helpers import MODEL_ARGS, REPO, TrainLog, seq_env  # noqa: E402

THREE_TEACHERS = {"t1.pt,t2.pt,t3.pt": "t1.pt,t2.pt", "t1.pt:t2.pt:t3.pt": "t1.pt:t2.pt"}
_TINY = " ".join(a for a in MODEL_ARGS if a not in ("--arch", "transformer"))  # keep the README's --arch
assert "--arch" not in _TINY and "--encoder-embed-dim" in _TINY

PRELUDE = f"""
fairseq-train() {{ command fairseq-train "$@" --cpu --num-workers 0 --data-buffer-size 0 {_TINY} \\
    --max-update 2 --update-freq 1 --log-format json --log-interval 1 --no-epoch-checkpoints; }}
fairseq-generate() {{ command fairseq-generate "$@" --cpu --num-workers 0 --data-buffer-size 0 --batch-size 64; }}
"""


def _workspace(tmp_path: Path, data_bin: Path, teachers: List[Path], student: Path | None = None) -> Path:
    (tmp_path / "DATA_BIN").symlink_to(data_bin)
    for i, t in enumerate(teachers, start=1):
        (tmp_path / f"t{i}.pt").symlink_to(t)
    if student is not None:
        (tmp_path / "student").symlink_to(student.parent)
    return tmp_path


def _u_lines(text: str) -> List[str]:
    return [line for line in text.splitlines() if line.startswith("U-")]


def test_readme_distillation_block(tmp_path: Path, toy_data_bin: Path, teacher_checkpoints: List[Path]) -> None:
    ws = _workspace(tmp_path, toy_data_bin, teacher_checkpoints)
    proc = run_block(block("fairseq-train DATA_BIN"), ws, PRELUDE, THREE_TEACHERS)
    assert (ws / "student" / "checkpoint_last.pt").is_file()
    assert list((ws / "tb").rglob("events.out.tfevents.*")), "--tensorboard-logdir tb wrote no event file"
    log = TrainLog.parse(proc.stdout + proc.stderr)
    assert [int(r["num_updates"]) for r in log.train_inner] == [1, 2]
    for rec in log.train_inner:
        assert math.isfinite(rec["loss"]) and rec["beta0"] > 0 and rec["alpha0"] > 0


def test_readme_seq_helpers_block(tmp_path: Path, toy_data_bin: Path, teacher_checkpoints: List[Path]) -> None:
    ws = _workspace(tmp_path, toy_data_bin, teacher_checkpoints)
    run_block(block("python -m endist_seq.toy_corpus"), ws, PRELUDE, THREE_TEACHERS, timeout=1200)
    raw = ws / "toy" / "raw"
    for name in ("train", "valid", "test", "test_permuted", "test_unseen"):
        assert (raw / f"{name}.en").is_file() and (raw / f"{name}.de").is_file()
    spm = ws / "toy" / "data-bin-spm"
    pieces = (spm / "dict.en.txt").read_text().splitlines()
    assert 0 < len(pieces) <= 200 and any(p.startswith("\u2581") for p in pieces), "not a sentencepiece vocabulary"
    assert (spm / "train.en-de.en.bin").is_file()
    ens = ws / "ens-bin"
    # --mix-reference: references are "train", the ensemble's translations "train1"; same dictionaries as DATA_BIN
    assert (ens / "train.en-de.de.bin").is_file() and (ens / "train1.en-de.de.bin").is_file()
    assert (ens / "dict.de.txt").read_text() == (toy_data_bin / "dict.de.txt").read_text()


def test_readme_generate_block(tmp_path: Path, toy_data_bin: Path, teacher_checkpoints: List[Path],
                               student_checkpoint: Path) -> None:
    ws = _workspace(tmp_path, toy_data_bin, teacher_checkpoints, student_checkpoint)
    proc = run_block(block("fairseq-generate DATA_BIN"), ws, PRELUDE, THREE_TEACHERS)
    u = _u_lines(proc.stdout)
    records = [json.loads(line) for line in (ws / "ens.jsonl").read_text().splitlines()]
    n = len(records)
    assert n > 0 and {r["model"] for r in records} == {"ensemble"} and all(r["members"] == 2 for r in records)
    assert all(len(r["hypotheses"]) == 5 for r in records)  # --nbest 5
    # ensemble: 5 U- lines per sentence; student: 1 per sentence (with its Dirichlet measures); references: 1
    assert len(u) == 5 * n + n + n, (len(u), n)
    assert sum("ku_ep=undefined" in line for line in u) == n  # the Dirichlet student has no expectation-of-products
    assert all("member_nll=undefined" not in line for line in u)


def test_readme_seq_eval_block(tmp_path: Path, toy_raw: Path, toy_data_bin: Path, teacher_checkpoints: List[Path],
                               student_checkpoint: Path) -> None:
    ws = _workspace(tmp_path, toy_data_bin, teacher_checkpoints, student_checkpoint)
    for side in ("en", "de"):
        (ws / f"test.{side}").symlink_to(toy_raw / f"test.{side}")
    run_block(block("python -m endist_seq.ood"), ws, PRELUDE, THREE_TEACHERS, timeout=1200)
    src = (toy_raw / "test.en").read_text().splitlines()
    permuted = (ws / "ood" / "test_permuted.en").read_text().splitlines()
    assert len(permuted) == len(src) and permuted != src
    assert all(sorted(a.split()) == sorted(b.split()) for a, b in zip(src, permuted))
    for model in ("ens", "stu"):
        for subset in ("test", "test1", "test2"):
            assert (ws / model / f"generate-{subset}.txt").is_file()
    models = json.loads((ws / "report" / "seq_eval.json").read_text())["models"]
    assert set(models) == {"ensemble", "Proxy-EnD2"}
    n_test = len(src)
    for name, res in models.items():
        assert res["sentences"] == n_test and 0.0 <= res["bleu"] <= 100.0
        assert set(res["ood"]) == {"permuted", "unseen"}
        for ood in res["ood"].values():
            assert ood["sentences"] == n_test
            assert 0.0 <= ood["roc_auc"]["pe_total"] <= 1.0
        # both models are Dirichlet/ensemble: the knowledge measure (RMI) is defined
        assert res["prr"]["pe_rmi"] is not None and res["ood"]["unseen"]["roc_auc"]["pe_rmi"] is not None


def test_generate_overhead_benchmark_runs(tmp_path: Path, toy_data_bin: Path, teacher_checkpoints: List[Path]) -> None:
    """``scripts/benchmarks/generate_overhead.py`` (README, Benchmarks) on the toy ensemble: one repeat of two
    plain/uncertainty pairs, pooled (a contender's throughput over its two runs), and the in-run shares of
    ``ep_measures_share.py`` (``--ep-share``), one JSON."""
    out = tmp_path / "overhead.json"
    cmd = [sys.executable, str(REPO / "scripts" / "benchmarks" / "generate_overhead.py"), "--data", str(toy_data_bin),
           "--paths", ":".join(map(str, teacher_checkpoints)), "--repeats", "1", "--runs-per-repeat", "2", "--warmup", "0",
           "--beam", "2", "--ep-share", "--out", str(out), "--json", str(tmp_path / "rows.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=seq_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads(out.read_text())
    assert result["identical_hypotheses"] is True and result["config"]["threads"] == 1
    assert result["config"]["runs_per_repeat"] == 2
    for key in ("cpu_throughput", "throughput", "wall"):
        per_repeat = result["per_repeat_ratio"][key]
        assert len(per_repeat) == 1 and math.isfinite(per_repeat[0]) and per_repeat[0] > 0
        assert result["ratio"][key]["median"] == result["ratio"][key]["min"] == result["ratio"][key]["max"] == per_repeat[0]
    pooled = {}
    for name in ("plain", "uncertainty"):  # fairseq's unrounded sentences/s, not the {:.1f}s timer
        assert all(r > 0 for r in result["runs"][name]["sentences_per_s"])
        (single,) = result["runs"][name]["single_runs_sentences_per_cpu_s"]
        assert len(single) == 2  # pooled: the same sentences twice in the summed CPU time of both runs
        pooled[name] = 2 / sum(1 / r for r in single)
        assert result["runs"][name]["sentences_per_cpu_s"] == [pytest.approx(pooled[name])]
    assert result["per_repeat_ratio"]["cpu_throughput"][0] == pytest.approx(pooled["plain"] / pooled["uncertainty"])
    assert result["per_repeat_ratio"]["throughput"][0] == pytest.approx(
        result["runs"]["plain"]["sentences_per_s"][0] / result["runs"]["uncertainty"]["sentences_per_s"][0])
    # the in-run shares: every timed part inside the generation loop, the ratios as documented
    (share,) = result["ep_share_runs"]
    assert 0 < share["forcing_s"] < share["rescore_s"] < share["inference_s"] and 0 < share["ep_s"] < share["rescore_s"]
    search = share["inference_s"] - share["rescore_s"]
    assert share["rescore_extra"] == pytest.approx(share["rescore_s"] / search)
    assert share["forcing_extra"] == pytest.approx(share["forcing_s"] / search)
    assert share["ep_extra"] == pytest.approx(share["ep_s"] / (share["inference_s"] - share["ep_s"]))
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [r["target"] for r in rows] == ["<= 1.1", "<= 1.1", "<= 1.1", "<= 0.03"]
    assert rows[0]["median"] == result["ratio"]["cpu_throughput"]["median"]
    assert rows[2]["median"] == pytest.approx(1 + share["rescore_extra"]) and rows[3]["median"] == share["ep_extra"]
    assert "overhead (median of 1)" in proc.stdout and "torch threads 1" in proc.stdout
