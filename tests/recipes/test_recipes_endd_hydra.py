"""Paper recipes scripts/endd_iclr2020 ([EnD2]) and scripts/hydra ([Hydra]): the whole recipe runs end to
end in --smoke mode (embedded data / digits stand-ins in the real MNIST and CIFAR-10 layouts, 2 optimiser steps
per run) and writes the paper tables; in
full mode a missing DATA_DIR stops the recipe before any training, naming DATA_DIR."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env(out: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "SMOKE", "NGPUS", "SP_SIZES", "MEMBERS", "SETTINGS_ONLY")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OUT_DIR"] = str(out)
    env.update(extra)
    return env


def _run(recipe: str, out: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", f"scripts/{recipe}/run_all.sh", *args], cwd=ROOT, env=_env(out, **extra),
                          capture_output=True, text=True, timeout=300)


def _table(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Columns and rows (first cell -> other cells) of the first markdown table in tables.md."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "OOD data":
            break
        rows[cells[0]] = cells[1:]
    return head[1:], rows


def _check_numeric(cols: list[str], rows: dict[str, list[str]]) -> None:
    for crit in ("ERR", "PRR", "ECE", "NLL", "Brier"):
        assert crit in rows, crit
        assert len(rows[crit]) == len(cols)
        for v in rows[crit]:
            assert re.fullmatch(r"-?\d+\.\d+", v), (crit, v)
    err = [float(v) for v in rows["ERR"]]
    assert all(0.0 <= e <= 100.0 for e in err)


def test_endd_smoke_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "endd"
    r = _run("endd_iclr2020", out, "--smoke", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    t = out / "tables"
    assert sorted(p.name for p in t.iterdir()) == ["ablation_members_digits", "ablation_temperature_digits",
                                                    "table1_spirals_m3", "table2_spirals", "table34_digits"]
    cols, rows = _table(t / "table1_spirals_m3" / "tables.md")
    assert cols == ["Individual", "Ensemble", "EnD", "EnD2"]
    _check_numeric(cols, rows)
    cols, rows = _table(t / "table2_spirals" / "tables.md")
    assert cols == ["Individual", "Ensemble", "EnD", "EnD2", "EnD+AUX", "EnD2+AUX"]
    _check_numeric(cols, rows)
    assert (t / "table2_spirals" / "uncertainty_maps.png").stat().st_size > 0  # [EnD2] Fig. 3
    md = (t / "table34_digits" / "tables.md").read_text()
    cols, rows = _table(t / "table34_digits" / "tables.md")
    assert cols == ["IND", "ENSM", "EnD", "EnD2", "EnD+AUX", "EnD2+AUX"]
    _check_numeric(cols, rows)
    # Table 4 layout: OOD set, T.Unc / K.Unc rows; K.Unc is "–" (undefined, null in eval.json) for the
    # categorical students (EnD, EnD+AUX) and for IND, a one-member ensemble, as in the paper
    k_rows = [line for line in md.splitlines() if "| K.Unc |" in line]
    assert len(k_rows) == 2 and "| digits_noise | T.Unc |" in md and "| digits_rotated | T.Unc |" in md
    k = [c.strip() for c in k_rows[0].strip("|").split("|")][2:]
    assert k[0] == "–" and k[2] == "–" and k[4] == "–" and all(re.fullmatch(r"\d+\.\d", k[i]) for i in (1, 3, 5))
    cols, _ = _table(t / "ablation_members_digits" / "tables.md")
    assert cols == ["Ensm-2", "EnD2+AUX-2", "Ensm-3", "EnD2+AUX-3"]
    cols, _ = _table(t / "ablation_temperature_digits" / "tables.md")
    assert cols == ["T0-1", "T0-10"]
    # the printed table is the written one; the student of 2 teacher members was distilled from 2
    assert "[EnD2] Table 2: spirals, 3 models" in r.stdout
    import yaml
    cfg = yaml.safe_load((out / "digits" / "ablation" / "m2" / "config.yaml").read_text())
    assert cfg["distill"]["teacher_members"] == 2 and cfg["data"]["aux"] == "digits_shuffled"
    assert not (out / ".vision_queue").exists()


def test_hydra_smoke_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "hydra"
    r = _run("hydra", out, "--smoke", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    t = out / "tables"
    assert sorted(p.name for p in t.iterdir()) == ["table2_mnist", "table3_c10"]
    for name in ("table2_mnist", "table3_c10"):
        cols, rows = _table(t / name / "tables.md")
        assert cols == ["Ensemble (M: 2)", "Prior Networks", "Knowledge distillation", "Hydra"]
        _check_numeric(cols, rows)
        # the paper's layout: rows = models; MU is N/A for the single-output KD student
        md = (t / name / "paper.md").read_text()
        assert md.strip() in r.stdout
        lines = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
        assert lines[0] == "| Method | ACC | NLL | Brier | MU |"
        cells = {c[0]: c[1:] for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[1:])}
        assert list(cells) == ["Ensemble (M = 2)", "Prior Networks", "Knowledge distillation", "Hydra"]
        for model, c in cells.items():
            assert all(re.fullmatch(r"\d\.\d{4}", v) for v in c[:3]), (model, c)
            assert (c[3] == "–") == (model == "Knowledge distillation"), (model, c)
    import json
    import yaml
    hydra = json.loads((out / "c10" / "hydra" / "eval" / "eval.json").read_text())
    assert hydra["method"] == "hydra" and hydra["num_members"] == 2       # one head per teacher member
    assert "vs_teacher" in hydra                                          # [Hydra] Table 1 gap
    assert "[Hydra] Table 3: c10" in (t / "table3_c10" / "tables.md").read_text()
    # the real MNIST (IDX) and CIFAR-10 loaders on stand-in files; MLP members (Table 2), ResNet-20 (Table 3)
    mn = yaml.safe_load((out / "mnist" / "hydra" / "config.yaml").read_text())
    assert (mn["data"]["name"], mn["model"]["name"], mn["model"]["kwargs"]["in_features"]) == ("mnist", "mlp", 784)
    assert mn["data"]["root"] == f"{out}/standins/mnist" and mn["method_args"]["head_blocks"] == 1
    assert mn["method_args"]["head_mlp"] == [100, 100] and mn["method_args"]["phase1_epochs"] == 20  # [Hydra] §2-3
    c10 = yaml.safe_load((out / "c10" / "ensemble" / "config.yaml").read_text())
    assert (c10["data"]["name"], c10["model"]["name"]) == ("cifar10", "resnet20")
    assert json.loads((out / "mnist" / "ensemble" / "eval" / "eval.json").read_text())["data"] == "mnist"


def test_full_mode_without_data_dir_fails_naming_it(tmp_path: Path) -> None:
    for recipe in ("endd_iclr2020", "hydra"):
        out = tmp_path / recipe
        r = _run(recipe, out)
        assert r.returncode != 0, recipe
        assert "DATA_DIR is not set" in r.stderr, (recipe, r.stderr)
        assert not any(p.name == "tables" for p in out.iterdir())
        r = _run(recipe, out, DATA_DIR=str(tmp_path / "nowhere"))
        assert r.returncode != 0 and "DATA_DIR/" in r.stderr, (recipe, r.stderr)
