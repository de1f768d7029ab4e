"""Paper recipes scripts/latentbe_icml2022 ([LatentBE] Tables 2/3/6) and scripts/batchensemble_distill
([BE] Tables 1/2): `run_all.sh --smoke` end to end on embedded digits, and full mode refusing to run
without DATA_DIR. Both smoke recipes start together (one fixture) so they share the two cores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LATENTBE_COLS = ["Base", "Single-KD", "DE-2", "KD", "AE-KD", "Proxy-EnD2", "KD+LatentBE", "+ConfODS", "+TDiv-SDiv",
                 "KD+BE", "BE+ConfODS", "BE+TDiv-SDiv"]
BE_COLS = ["DE-TEACHER", "LONE-STUDENT", "BE-STUDENT-head", "BE-STUDENT-kd"]
METRIC_ROWS = ["ERR", "ECE", "NLL", "Cal. NLL"]


def _env(out: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OUT_DIR"] = str(out)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("DATA_DIR", None)
    env.pop("SMOKE", None)
    return env


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    procs = {}
    for recipe in ("latentbe_icml2022", "batchensemble_distill"):
        out = tmp_path_factory.mktemp(recipe)
        procs[recipe] = (out, subprocess.Popen(["bash", f"scripts/{recipe}/run_all.sh", "--smoke"], cwd=ROOT, env=_env(out),
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    res = {}
    for recipe, (out, p) in procs.items():
        log, _ = p.communicate(timeout=300)
        res[recipe] = (out, p.returncode, log)
    return res


def _table(md: str, cols: list[str]) -> dict[str, list[str]]:
    lines = md.splitlines()
    head = "| Crit. | " + " | ".join(cols) + " |"
    assert head in lines, f"table header {head!r} missing in:\n{md}"
    rows = {}
    for line in lines[lines.index(head) + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("recipe,cols", [("latentbe_icml2022", LATENTBE_COLS), ("batchensemble_distill", BE_COLS)])
def test_smoke_recipe_prints_table(smoke_runs, recipe, cols):
    out, rc, log = smoke_runs[recipe]
    assert rc == 0, log[-4000:]
    table = out / "tables" / "digits_de2" / "tables.md"
    assert table.is_file(), log[-4000:]
    md = table.read_text()
    rows = _table(md, cols)
    for r in METRIC_ROWS:
        assert r in rows, f"row {r} missing:\n{md}"
        assert len(rows[r]) == len(cols)
        assert all(re.fullmatch(r"\d+\.\d+", v) for v in rows[r]), rows[r]   # every column has a number
    assert md.strip() in log   # the table is printed, in the same layout
    # every step ran: teacher, each student trained and evaluated from its own run directory
    ens = out / "digits" / "ensemble"
    assert (ens / "checkpoints" / "final.pt").is_file()
    teacher = json.loads((ens / "eval_de2" / "eval.json").read_text())
    for col in cols:
        if col.startswith("DE-") or col == "Base":
            continue
        run = out / "digits" / ("single_kd" if col == "Single-KD" else f"de2/{re.sub(r'[^A-Za-z0-9]', '_', col)}")
        cfg = (run / "config.yaml").read_text()
        assert "teacher_members: 2" in cfg or col == "Single-KD", cfg
        assert (run / "eval" / "eval.json").is_file(), col
    assert teacher["test"], teacher
    assert not list(out.glob(".vision_queue*"))


def test_latentbe_students_use_requested_methods(smoke_runs):
    out, rc, log = smoke_runs["latentbe_icml2022"]
    assert rc == 0, log[-4000:]
    d = out / "digits" / "de2"
    expect = {"AE_KD": "method: aekd", "Proxy_EnD2": "method: proxy_end2", "_TDiv_SDiv": "perturbation: tdiv_sdiv",
              "BE_ConfODS": "perturbation: confods", "KD_BE": "objective: head"}
    for run, needle in expect.items():
        assert needle in (d / run / "config.yaml").read_text(), run
    # LatentBE is merged into one network (single-model evaluation), BE stays a 2-member ensemble
    lbe = json.loads((d / "KD_LatentBE" / "eval" / "eval.json").read_text())
    be = json.loads((d / "KD_BE" / "eval" / "eval.json").read_text())
    for run in ("KD_LatentBE", "_ConfODS", "_TDiv_SDiv"):
        ev = json.loads((d / run / "eval" / "eval.json").read_text())
        assert (ev["method"], ev["kind"], ev["num_members"]) == ("latentbe", "categorical", 1), run
    assert (lbe["kind"], be["kind"], be["num_members"]) == ("categorical", "ensemble", 2)
    teacher = json.loads((out / "digits" / "ensemble" / "eval_de2" / "eval.json").read_text())
    base = json.loads((out / "digits" / "ensemble" / "eval_base" / "eval.json").read_text())
    assert (teacher["num_members"], base["num_members"]) == (2, 1)


def test_be_students_objectives(smoke_runs):
    out, rc, log = smoke_runs["batchensemble_distill"]
    assert rc == 0, log[-4000:]
    d = out / "digits" / "de2"
    assert "objective: head" in (d / "BE_STUDENT_head" / "config.yaml").read_text()
    assert "objective: kd" in (d / "BE_STUDENT_kd" / "config.yaml").read_text()
    assert "method: end" in (d / "LONE_STUDENT" / "config.yaml").read_text()
    for run in ("BE_STUDENT_head", "BE_STUDENT_kd"):   # one BE member per teacher member, evaluated as an ensemble
        ev = json.loads((d / run / "eval" / "eval.json").read_text())
        assert (ev["method"], ev["kind"], ev["num_members"]) == ("batchensemble", "ensemble", 2), run


@pytest.mark.parametrize("recipe", ["latentbe_icml2022", "batchensemble_distill"])
def test_full_mode_without_data_dir_fails(tmp_path, recipe):
    p = subprocess.run(["bash", f"scripts/{recipe}/run_all.sh"], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "DATA_DIR" in p.stderr
    assert not (tmp_path / "tables").exists()


@pytest.mark.parametrize("recipe,cols", [("latentbe_icml2022", LATENTBE_COLS), ("batchensemble_distill", BE_COLS)])
def test_readme_states_layout_hardware_numbers_and_compare(recipe, cols):
    d = ROOT / "scripts" / recipe
    text = (d / "README.md").read_text()
    for needle in ("DATA_DIR/cifar-10-batches-py", "DATA_DIR/cifar-100-python", "## Hardware of the paper",
                   "## Expected numbers", "endist-vision compare", "run_all.sh --smoke"):
        assert needle in text, needle
    compare = text[text.rindex("endist-vision compare"):].split("```")[0]
    labels = re.findall(r"(\S+?)=\$R", compare)
    assert [c.replace("DE-2", "DE-4") for c in cols] == labels   # README command: same columns as the smoke table
    for step in ("01_prepare.sh", "02_train_ensemble.sh", "03_distill.sh", "04_evaluate.sh", "05_table.sh", "run_all.sh"):
        body = (d / step).read_text()
        assert step in text or step == "run_all.sh"
        if step != "run_all.sh":
            first = next(line for line in body.splitlines() if line and not line.startswith("#"))
            assert first == 'source "$(dirname "$0")/../lib/recipe_common.sh"', step
    assert "93.98" in text if recipe == "latentbe_icml2022" else "0.963" in text   # a paper number copied
