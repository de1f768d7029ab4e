"""Paper recipes scripts/latentbe_icml2022 ([LatentBE] Tables 2-7) and scripts/batchensemble_distill
([BE] Tables 1/2 with the corrupted columns): `run_all.sh --smoke` end to end on digits stand-ins written in
the real CIFAR-10 / CIFAR-10-C / ImageNet layouts (the real loaders run), and full mode refusing to run
without DATA_DIR. Both smoke recipes start together (one fixture) so they share the two cores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LATENTBE_COLS = ["Base", "Single-KD", "DE-2", "KD", "AE-KD", "Proxy-EnD2", "KD+LatentBE", "+ConfODS", "+TDiv-SDiv",
                 "KD+BE", "BE+ConfODS", "BE+TDiv-SDiv"]
BE_COLS = ["DE-TEACHER", "LONE-STUDENT", "BE-STUDENT-head", "BE-STUDENT-kd"]
METRIC_ROWS = ["ERR", "ECE", "NLL", "Cal. NLL", "CIFAR-10-C ERR", "CIFAR-10-C ECE", "CIFAR-10-C NLL"]
SETTING = {"latentbe_icml2022": "c10_wrn28x1", "batchensemble_distill": "c10_wrn28x10"}
NUM = r"\d+\.\d+"


def _paper_rows(md: str, head: list[str]) -> dict[str, list[str]]:
    """{method: cells} of the eval_table.py table whose header is `| Method | <head> |`."""
    return _table(md, head, first="Method")


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


def _table(md: str, cols: list[str], first: str = "Crit.") -> dict[str, list[str]]:
    """{first cell: other cells} of the markdown table whose header is `| <first> | <cols> |`."""
    lines = md.splitlines()
    head = f"| {first} | " + " | ".join(cols) + " |"
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
    table = out / "tables" / f"{SETTING[recipe]}_de2" / "tables.md"
    assert table.is_file(), log[-4000:]
    md = table.read_text()
    rows = _table(md, cols)
    for r in METRIC_ROWS:
        assert r in rows, f"row {r} missing:\n{md}"
        assert len(rows[r]) == len(cols)
        assert all(re.fullmatch(r"\d+\.\d+", v) for v in rows[r]), rows[r]   # every column has a number
    assert md.strip() in log   # the table is printed, in the same layout
    # every step ran: teacher, each student trained and evaluated from its own run directory
    ens = out / SETTING[recipe] / "ensemble"
    assert (ens / "checkpoints" / "final.pt").is_file()
    cfg = (ens / "config.yaml").read_text()   # the real CIFAR-10 loader on the stand-in files
    assert "name: cifar10" in cfg and f"root: {out}/standins/cifar-10-batches-py" in cfg, cfg
    teacher = json.loads((ens / "eval_de2" / "eval.json").read_text())
    for col in cols:
        if col.startswith("DE-") or col == "Base":
            continue
        run = out / SETTING[recipe] / ("single_kd" if col == "Single-KD" else f"de2/{re.sub(r'[^A-Za-z0-9]', '_', col)}")
        cfg = (run / "config.yaml").read_text()
        assert "teacher_members: 2" in cfg or col == "Single-KD", cfg
        ev = json.loads((run / "eval" / "eval.json").read_text())
        c = ev["shift"]["CIFAR-10-C"]   # 2 corruptions x 5 severities of the stand-in, averaged
        assert c["dataset"] == "cifar10_c" and len(c["subsets"]) == 10 and 0.0 <= c["mean"]["accuracy"] <= 1.0, col
    assert teacher["test"], teacher
    assert not list(out.glob(".vision_queue*"))


def test_latentbe_students_use_requested_methods(smoke_runs):
    out, rc, log = smoke_runs["latentbe_icml2022"]
    assert rc == 0, log[-4000:]
    d = out / "c10_wrn28x1" / "de2"
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
    teacher = json.loads((out / "c10_wrn28x1" / "ensemble" / "eval_de2" / "eval.json").read_text())
    base = json.loads((out / "c10_wrn28x1" / "ensemble" / "eval_base" / "eval.json").read_text())
    assert (teacher["num_members"], base["num_members"]) == (2, 1)



def test_latentbe_students_get_the_paper_alpha_tau(smoke_runs):
    """[LatentBE] App. B.4 (α, τ) = (1, 4) for CIFAR from the config's `# kd_args:` line (not Proxy-EnD2),
    λ from `# latentbe_args:`, ConfODS rows on clean and perturbed inputs (issue 13 items 4, 9)."""
    out, rc, log = smoke_runs["latentbe_icml2022"]
    assert rc == 0, log[-4000:]
    d = out / "c10_wrn28x1" / "de2"
    args = {run: yaml.safe_load((d / run / "config.yaml").read_text())["method_args"]
            for run in ("KD", "AE_KD", "Proxy_EnD2", "_ConfODS", "_TDiv_SDiv", "BE_ConfODS")}
    for run in ("KD", "AE_KD", "_ConfODS", "_TDiv_SDiv", "BE_ConfODS"):
        assert (args[run]["temperature"], args[run]["ce_weight"]) == (4.0, 0.0), run
    assert "ce_weight" not in args["Proxy_EnD2"] and args["Proxy_EnD2"].get("temperature", 1.0) == 1.0
    assert args["_TDiv_SDiv"]["fast_weight_decay"] == 5e-4 and "fast_weight_decay" not in args["BE_ConfODS"]
    assert args["_ConfODS"]["perturbation_inputs"] == args["BE_ConfODS"]["perturbation_inputs"] == "clean_and_perturbed"
    assert args["_TDiv_SDiv"].get("perturbation_inputs", "perturbed") == "perturbed"
    single = yaml.safe_load((out / "c10_wrn28x1" / "single_kd" / "config.yaml").read_text())["method_args"]
    assert single["temperature"] == 4.0

def test_be_students_objectives(smoke_runs):
    out, rc, log = smoke_runs["batchensemble_distill"]
    assert rc == 0, log[-4000:]
    d = out / "c10_wrn28x10" / "de2"
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
    # the corrupted sets' layout and paper numbers ([LatentBE] Tables 4, 5, 7; [BE] c- columns)
    needles = (["DATA_DIR/CIFAR-10-C/", "DATA_DIR/CIFAR-100-C/", "DATA_DIR/imagenet/train/", "73.22", "0.288 ms/img", "77.38",
                "table4.md", "table5.md"] if recipe == "latentbe_icml2022" else
               ["DATA_DIR/CIFAR-10-C/", "DATA_DIR/CIFAR-100-C/", "0.779 ± 0.008", "paper.md"])
    for needle in needles:
        assert needle in text, needle


def test_latentbe_tables_4_5_7(smoke_runs):
    out, rc, log = smoke_runs["latentbe_icml2022"]
    assert rc == 0, log[-4000:]
    t = out / "tables"
    # Table 4: corrupted CIFAR, DE teacher + the six single-network students, means over corruptions x severities
    md = (t / "table4.md").read_text()
    assert md.strip() in log
    rows = _paper_rows(md, ["ACC", "NLL", "ECE", "cNLL", "cECE"])
    assert list(rows) == ["**CIFAR-10-C:**", "DE-2 teacher", "KD", "AE-KD", "Proxy-EnD2", "KD+LatentBE", "+ConfODS", "+TDiv-SDiv"]
    kd = json.loads((out / "c10_wrn28x1" / "de2" / "KD" / "eval" / "eval.json").read_text())
    assert rows["KD"][0] == f"{100 * kd['shift']['CIFAR-10-C']['mean']['accuracy']:.2f}"
    assert all(re.fullmatch(NUM, v) for r in list(rows.values())[1:] for v in r)
    # Table 5: training time from metrics.json, inference measured on one device: BE batched and M passes,
    # LatentBE merged (one plain network: no multi-pass column)
    md = (t / "table5.md").read_text()
    rows = _paper_rows(md, ["ACC", "NLL", "Training (hrs)", "Inference (ms/img)", "Inference, M passes (ms/img)"])
    assert list(rows) == ["DE-2 teacher", "KD", "KD+LatentBE", "+TDiv-SDiv", "KD+BE", "BE+TDiv-SDiv"]
    rt = json.loads((t / "runtime_c10_wrn28x1.json").read_text())
    for label, r in rows.items():
        assert all(re.fullmatch(NUM, v) for v in r[:4]), (label, r)
        multi = label in ("DE-2 teacher", "KD+BE", "BE+TDiv-SDiv")
        assert (r[4] != "–") == multi, (label, r)
        assert rt["runs"][label]["members"] == (2 if multi else 1)
        assert rt["runs"][label]["batched_ms_per_img"] > 0
    # Table 7 (ImageNet R50 setting): the real ImageNet loader on the stand-in JPEGs, only its three students
    md = (t / "in_r50_de2" / "paper.md").read_text()
    rows = _paper_rows(md, ["ACC", "NLL", "ECE", "cNLL", "cECE"])
    assert list(rows) == ["Base (w/o distillation)", "Single KD", "DE-2 teacher", "KD", "KD+LatentBE", "+TDiv-SDiv"]
    assert all(re.fullmatch(NUM, v) for r in rows.values() for v in r)
    assert sorted(p.name for p in (out / "in_r50" / "de2").iterdir()) == ["KD", "KD_LatentBE", "_TDiv_SDiv"]
    cfg = (out / "in_r50" / "ensemble" / "config.yaml").read_text()
    assert "name: imagenet" in cfg and "standins/imagenet" in cfg
    ev = json.loads((out / "in_r50" / "de2" / "KD_LatentBE" / "eval" / "eval.json").read_text())
    assert ev["data"] == "imagenet" and "imagenet_o" in ev["ood"]


def test_be_paper_layout_with_corrupted_columns(smoke_runs):
    out, rc, log = smoke_runs["batchensemble_distill"]
    assert rc == 0, log[-4000:]
    md = (out / "tables" / "c10_wrn28x10_de2" / "paper.md").read_text()
    assert md.strip() in log
    rows = _paper_rows(md, ["Acc.", "ECE", "NLL", "c-Acc.", "c-ECE", "c-NLL"])
    assert list(rows) == ["DE TEACHER", "LONE-STUDENT", "BE-STUDENT-head", "BE-STUDENT-kd"]
    assert all(re.fullmatch(NUM, v) for r in rows.values() for v in r)
    ev = json.loads((out / "c10_wrn28x10" / "de2" / "BE_STUDENT_head" / "eval" / "eval.json").read_text())
    assert rows["BE-STUDENT-head"][5] == f"{ev['shift']['CIFAR-10-C']['mean']['nll']:.3f}"
