"""[Proxy] recipes (scripts/proxy_neurips2021/): both sub-recipes run end-to-end in --smoke mode and print
their tables in the paper's layout; full mode without DATA_DIR fails naming DATA_DIR."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "scripts" / "proxy_neurips2021"


def _env(out: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(OUT_DIR=str(out), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("DATA_DIR", None)
    env.pop("SMOKE", None)
    env.update(extra)
    return env


def _rows(md: str, header_start: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header cells and {first cell: cells} of the markdown table whose header starts with header_start."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            head = [c.strip() for c in line.strip("|").split("|")]
            rows = {}
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip("|").split("|")]
                rows[cells[0]] = cells
            return head, rows
    raise AssertionError(f"no table starting with {header_start!r} in:\n{md}")


def _num(cell: str) -> float:
    assert re.fullmatch(r"-?\d+\.\d", cell), cell
    return float(cell)


def test_smoke_both_recipes(tmp_path: Path) -> None:
    # the two recipes are independent: run them side by side (2 cores)
    procs = {
        name: subprocess.Popen(["bash", str(RECIPE / f"run_all_{name}.sh"), "--smoke"], cwd=ROOT, env=_env(tmp_path / name),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in ("imagenet", "wmt")
    }
    logs = {name: p.communicate(timeout=600)[0] for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, f"run_all_{name}.sh --smoke failed:\n{logs[name][-4000:]}"

    # Tables 1-2
    md = (tmp_path / "imagenet" / "imagenet" / "tables.md").read_text()
    assert md in logs["imagenet"]  # the table is printed
    models = ["Single", "Ensemble", "EnD", "EnD2"]
    head, rows = _rows(md, "| Method | ImageNet-val Acc")
    assert head == ["Method", "ImageNet-val Acc", "ImageNet-val ECE"] + [f"ImageNet-{s} {m}" for s in "ACR" for m in ("Acc", "ECE")]
    assert list(rows) == models
    import json
    im = tmp_path / "imagenet" / "imagenet"
    for name, r in rows.items():   # Acc / ECE on ImageNet-val and on the labelled shift sets A, C, R
        assert all(0 <= _num(c) <= 100 for c in r[1:]), r
    ens = json.loads((im / "ensemble" / "eval" / "eval.json").read_text())
    assert ens["data"] == "imagenet" and set(ens["shift"]) == {"ImageNet-A", "ImageNet-C", "ImageNet-R"}
    assert ens["shift"]["ImageNet-A"]["classes"] == 6 and len(ens["shift"]["ImageNet-C"]["subsets"]) == 10  # A: 6-wnid mask
    assert rows["Ensemble"][5] == f"{100 * ens['shift']['ImageNet-C']['mean']['accuracy']:.1f}"
    head, rows = _rows(md, "| Method | ImageNet-O EoE")
    assert head == ["Method"] + [f"ImageNet-{s} {m}" for s in "OAR" for m in ("EoE", "RMI")]
    assert list(rows) == models
    for name, r in rows.items():
        eoe, rmi = r[1::2], r[2::2]
        assert all(0 <= _num(c) <= 100 for c in eoe)
        if name in ("Single", "EnD"):
            assert rmi == ["–"] * 3
        else:
            assert all(0 <= _num(c) <= 100 for c in rmi)
    assert set(ens["ood"]) == {"imagenet_o", "imagenet-a", "imagenet-r"}
    assert "members: 2" in (im / "ensemble" / "config.yaml").read_text()

    # Tables 3-4
    md = (tmp_path / "wmt" / "wmt" / "report" / "seq_eval.md").read_text()
    head, rows = _rows(md, "| Model | BLEU |")
    assert head == ["Model", "BLEU", "PRR EoE", "PRR RMI"]
    assert list(rows) == models
    for name, r in rows.items():
        assert _num(r[1]) >= 0
        assert (r[3] == "-") == (name in ("Single", "EnD")), r
    head, rows = _rows(md, "| Model | Permuted EoE")
    assert head == ["Model"] + [f"{o} {m}" for o in ("Permuted", "Speech", "German", "French") for m in ("EoE", "RMI")]
    assert list(rows) == models
    for name, r in rows.items():
        assert all(0 <= _num(c) <= 100 for c in r[1::2])
        if name in ("Ensemble", "EnD2"):
            assert all(0 <= _num(c) <= 100 for c in r[2::2])
    # the distillation really used 2 teachers and the Proxy criterion, on 50 test sentences
    log = (tmp_path / "wmt" / "wmt" / "students" / "end2" / "train.log").read_text()
    assert "rkl_dirichlet_proxy_distillation" in log and "num_updates 40" in log.replace("=", " ")
    gen = (tmp_path / "wmt" / "wmt" / "generate" / "ensemble" / "generate-test.txt").read_text()
    n_hyp = len(re.findall(r"^H-\d+", gen, flags=re.M))
    assert n_hyp == len(re.findall(r"^S-\d+", gen, flags=re.M)) and 40 <= n_hyp <= 50
    genlog = (tmp_path / "wmt" / "wmt" / "generate.log").read_text()
    assert re.search(r"--path \S*t1/checkpoint_last\.pt:\S*t2/checkpoint_last\.pt", genlog)


def test_full_mode_without_data_dir_fails(tmp_path: Path) -> None:
    for runner in ("run_all_imagenet.sh", "run_all_wmt.sh"):
        p = subprocess.run(["bash", str(RECIPE / runner)], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
        assert p.returncode != 0, runner
        assert "DATA_DIR" in p.stderr, (runner, p.stderr)
    assert not (tmp_path / "imagenet").exists() and not (tmp_path / "wmt").exists()
