"""fairseq on the GPU: ``ensemble_distillation`` training in fp16/bf16 (teachers in half precision too)
and ``fairseq-generate --task translation_uncertainty --compute-uncertainty`` on CUDA vs. plain generation
on CUDA (same hypotheses) and vs. the same uncertainty run on CPU (same values)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from endist_seq.generation.parse import read_generate_output
from gpu_helpers import REPO, check, gpu_env, run, tool

MODEL_ARGS: List[str] = (REPO / "scripts" / "seq" / "toy_model.args").read_text().split()
COMMON = ["--num-workers", "0", "--no-epoch-checkpoints", "--optimizer", "adam", "--adam-betas", "(0.9,0.98)",
          "--lr", "5e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50", "--batch-size", "64",
          "--dropout", "0.1", "--disable-validation", "--log-format", "json", *MODEL_ARGS]
GEN_FLAGS = ["--beam", "4", "--nbest", "2", "--batch-size", "100", "--num-workers", "0", "--max-len-b", "30",
             "--gen-subset", "test"]
TEACHER_UPDATES = 300
STUDENT_UPDATES = 150
_LOG_RE = re.compile(r"\| train_inner \| (\{.*\})\s*$")


def train_inner(text: str) -> List[Dict[str, float]]:
    recs = []
    for line in text.splitlines():
        m = _LOG_RE.search(line)
        if m:
            recs.append({k: float(v) for k, v in json.loads(m.group(1)).items() if _is_number(v)})
    return recs


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def distill(data: Path, out: Path, teachers: List[Path], precision: List[str], updates: int) -> subprocess.CompletedProcess:
    proc = run([tool("fairseq-train"), data, "--user-dir", "endist_seq", "--task", "ensemble_distillation",
                "--ensemble-paths", ",".join(map(str, teachers)), "--criterion", "rkl_dirichlet_proxy_distillation",
                "--seed", "100", *COMMON, *precision, "--max-update", str(updates), "--log-interval", "1",
                "--init-temp", "2", "--final-temp", "1", "--anneal-start", "10", "--anneal-end", "60",
                "--save-dir", out])
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.log").write_text(proc.stdout + proc.stderr)
    return check(proc)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Toy corpus + fairseq-preprocess (CPU), two fp16 teachers and an fp16 Proxy-EnD² student (GPU)."""
    root = tmp_path_factory.mktemp("gpu_seq")
    check(run(["bash", REPO / "scripts" / "seq" / "toy_pipeline.sh", root, "data"], PYTHON=sys.executable))
    data = root / "data-bin"
    procs = []
    for seed in (1, 2):
        d = root / f"teacher{seed}"
        d.mkdir()
        cmd = [tool("fairseq-train"), data, "--user-dir", "endist_seq", "--task", "translation", "--seed", str(seed),
               "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", *COMMON, "--fp16",
               "--max-update", str(TEACHER_UPDATES), "--log-interval", "50", "--save-dir", d]
        procs.append(subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=gpu_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-4000:]
    teachers = [root / f"teacher{s}" / "checkpoint_last.pt" for s in (1, 2)]
    student = root / "student_fp16"
    distill(data, student, teachers, ["--fp16", "--fp16-ensemble"], STUDENT_UPDATES)
    return {"root": root, "data": data, "t1": teachers[0], "t2": teachers[1], "student": student / "checkpoint_last.pt",
            "student_log": student / "train.log"}


def _check_training_log(text: str, updates: int) -> List[Dict[str, float]]:
    recs = train_inner(text)
    assert len(recs) == updates, f"{len(recs)} train_inner records\n{text[-3000:]}"
    for rec in recs:
        for key in ("loss", "nll_loss", "alpha0", "beta0"):
            if key in rec:
                assert math.isfinite(rec[key]), (key, rec)
    assert "loss" in recs[0]
    first, last = recs[: updates // 5], recs[-(updates // 5):]
    assert sum(r["loss"] for r in last) < sum(r["loss"] for r in first), "loss did not decrease"
    assert torch.cuda.get_device_name() in text  # fairseq logs the CUDA device it trains on
    return recs


def test_distill_fp16_with_fp16_teachers(toy: Dict[str, Path]) -> None:
    recs = _check_training_log(toy["student_log"].read_text(), STUDENT_UPDATES)
    scales = [r["loss_scale"] for r in recs if "loss_scale" in r]
    assert scales and all(0 < s < math.inf for s in scales)  # fp16 optimizer with dynamic loss scaling


def test_distill_amp_with_bf16_teachers(toy: Dict[str, Path], tmp_path: Path) -> None:
    """fairseq's --amp (autocast + GradScaler) student with --bf16-ensemble teachers. (fairseq 0.12's own
    --bf16 means TPU: it calls torch_xla, so it is no GPU mode.)"""
    distill(toy["data"], tmp_path / "amp", [toy["t1"], toy["t2"]], ["--amp", "--bf16-ensemble"], 60)
    _check_training_log((tmp_path / "amp" / "train.log").read_text(), 60)


@pytest.mark.parametrize("criterion", ["sequence_distribution_distillation", "dirichlet_proxy_distillation",
                                       "forward_kl_mean_distillation"])
def test_other_criterions_fp16(toy: Dict[str, Path], tmp_path: Path, criterion: str) -> None:
    """EnD² NLL, forward-KL Proxy and EnD (mean KL) criterions: fp16 student, fp16 teachers, finite losses."""
    out = tmp_path / criterion
    proc = run([tool("fairseq-train"), toy["data"], "--user-dir", "endist_seq", "--task", "ensemble_distillation",
                "--ensemble-paths", f"{toy['t1']},{toy['t2']}", "--criterion", criterion, "--seed", "100", *COMMON,
                "--fp16", "--fp16-ensemble", "--max-update", "30", "--log-interval", "1", "--save-dir", out])
    check(proc)
    recs = train_inner(proc.stdout + proc.stderr)
    assert len(recs) == 30 and all(math.isfinite(r["loss"]) for r in recs), recs[-3:]


def _fairseq_lines(path: Path) -> List[str]:
    return [l for l in path.read_text().splitlines() if l.startswith(("S-", "T-", "H-", "D-", "P-"))]


@pytest.fixture(scope="module")
def gen(toy: Dict[str, Path]) -> Dict[str, Path]:
    """Generations of the test set, all in one process (tests/seq/generate_batch.py)."""
    root = toy["root"] / "gen"
    root.mkdir()
    data, stu, ens = toy["data"], toy["student"], f"{toy['t1']}:{toy['t2']}"

    def args(path: str, name: str, *extra: str) -> List[str]:
        return [str(data), "--user-dir", "endist_seq", "--task", "translation_uncertainty", "--path", path,
                *GEN_FLAGS, "--results-path", str(root / name), *extra]

    runs = [
        args(str(stu), "stu_plain"),
        args(str(stu), "stu_gpu", "--compute-uncertainty", "--uncertainty-jsonl", str(root / "stu_gpu.jsonl")),
        args(str(stu), "stu_cpu", "--compute-uncertainty", "--cpu"),
        args(str(stu), "stu_fp16", "--compute-uncertainty", "--fp16"),
        args(ens, "ens_plain"),
        args(ens, "ens_gpu", "--compute-uncertainty"),
        args(ens, "ens_cpu", "--compute-uncertainty", "--cpu"),
    ]
    spec = root / "runs.json"
    spec.write_text(json.dumps(runs))
    proc = run([sys.executable, REPO / "tests" / "seq" / "generate_batch.py", spec])
    (root / "batch.log").write_text(proc.stdout + proc.stderr)
    check(proc)
    return {name: root / name / "generate-test.txt" for name in ("stu_plain", "stu_gpu", "stu_cpu", "stu_fp16",
                                                                 "ens_plain", "ens_gpu", "ens_cpu")}


@pytest.mark.parametrize("kind", ["stu", "ens"])
def test_generate_uncertainty_on_gpu_keeps_hypotheses(gen: Dict[str, Path], kind: str) -> None:
    """--compute-uncertainty on CUDA prints exactly fairseq's lines of the plain run, plus U- lines."""
    plain, ours = _fairseq_lines(gen[f"{kind}_plain"]), _fairseq_lines(gen[f"{kind}_gpu"])
    assert len(plain) > 1000 and ours == plain
    sents = read_generate_output(str(gen[f"{kind}_gpu"]))
    assert len(sents) == 200
    h_scores: Dict[int, List[float]] = {}
    for line in ours:
        if line.startswith("H-"):
            head, score, _ = line.split("\t")
            h_scores.setdefault(int(head[2:]), []).append(float(score) * math.log(2.0))  # fairseq prints base 2
    for s in sents:
        for rank in (0, 1):
            m = s.measures[rank]
            assert all(v is None or math.isfinite(v) for v in m.values()), m
            assert m["score"] == pytest.approx(h_scores[s.id][rank], rel=1e-5, abs=1e-6)
            if kind == "ens":  # search and teacher-forced re-scoring use the same mean distribution
                assert m["tu_pe"] == pytest.approx(-m["score"], rel=1e-3, abs=1e-4)
            assert m["ku_pe"] >= -1e-5


@pytest.mark.parametrize("kind", ["stu", "ens"])
def test_generate_uncertainty_gpu_equals_cpu(gen: Dict[str, Path], kind: str) -> None:
    """Sentence by sentence: where CUDA and CPU decode the same n-best, every measure agrees."""
    gpu = {s.id: s for s in read_generate_output(str(gen[f"{kind}_gpu"]))}
    cpu = {s.id: s for s in read_generate_output(str(gen[f"{kind}_cpu"]))}
    assert gpu.keys() == cpu.keys()
    same = [i for i in gpu if gpu[i].hypotheses == cpu[i].hypotheses]
    assert len(same) >= 0.95 * len(gpu), f"only {len(same)}/{len(gpu)} identical n-best lists"
    worst = 0.0
    for i in same:
        for rank in gpu[i].measures:
            for name, v in gpu[i].measures[rank].items():
                w = cpu[i].measures[rank][name]
                assert (v is None) == (w is None), name
                if v is not None:
                    worst = max(worst, abs(v - w) / max(1.0, abs(w)))
    assert worst < 1e-3, worst


def test_generate_fp16_uncertainty_is_finite_and_close(gen: Dict[str, Path]) -> None:
    fp16 = {s.id: s for s in read_generate_output(str(gen["stu_fp16"]))}
    fp32 = {s.id: s for s in read_generate_output(str(gen["stu_gpu"]))}
    assert fp16.keys() == fp32.keys() and len(fp16) == 200
    diffs = []
    for i, s in fp16.items():
        for m in s.measures.values():
            assert all(v is None or math.isfinite(v) for v in m.values()), m
        if s.hypotheses == fp32[i].hypotheses:
            a, b = s.measures[0], fp32[i].measures[0]
            diffs += [abs(a[k] - b[k]) / max(1.0, abs(b[k])) for k in a if a[k] is not None]
    assert len(diffs) > 100 * 5
    diffs.sort()
    assert diffs[len(diffs) // 2] < 1e-2 and diffs[-1] < 0.1, (diffs[len(diffs) // 2], diffs[-1])
