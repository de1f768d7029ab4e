"""The README's quick start: ``make demo`` and ``make bench`` run (smoke settings); its figure is one the demo makes.

``make test`` is this suite itself (``tests/test_readme.py`` checks that ``.ci/run`` calls it).
``make demo`` is run for real through make, with ``DEMO_SMOKE=1`` (tiny settings) and the interpreter running
these tests as the virtual environment (``BIN=``; ``-o`` stops make from rebuilding ``.venv``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from readme_blocks import REPO, block, commands, readme_text

#: the README's figure -> the file the demo writes it to (under DEMO_OUT)
FIGURE_SOURCES = {"docs/figures/spirals_uncertainty_maps.png": "vision_spirals/fig3/uncertainty_maps.png"}


def test_make_demo_smoke(tmp_path: Path) -> None:
    assert commands(block("make demo")) == ["make demo", "make test"]
    out = tmp_path / "demo_output"
    env = {**os.environ, "DEMO_SMOKE": "1", "DEMO_OUT": str(out), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(["make", "-o", ".venv/.endist-installed", f"BIN={bin_dir}", "demo"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    parts = sorted(p.name[:2] for p in (REPO / "scripts" / "demo").glob("[0-9][0-9]_*.sh"))
    ran = re.findall(r"^\((\d\d)_\w+: \d+ s\)$", proc.stdout, flags=re.M)
    assert ran == parts, f"demo parts run {ran}, expected {parts}"
    assert "demo finished in" in proc.stdout
    for readme_png, demo_png in FIGURE_SOURCES.items():
        made = out / demo_png
        assert made.is_file(), f"the demo did not write {demo_png}"
        with Image.open(made) as im:
            assert im.size[0] > 200 and im.size[1] > 100


def test_readme_figure_is_the_demo_figure() -> None:
    text = readme_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert figures, "the README shows no figure"
    for fig in figures:
        assert fig in FIGURE_SOURCES, f"{fig}: not a figure the demo makes (add it to FIGURE_SOURCES)"
        with Image.open(REPO / fig) as im:
            assert im.format == "PNG" and im.size[0] > 400



def test_make_bench_smoke(tmp_path: Path) -> None:
    """``make bench`` runs every benchmark and prints their tables and ONE summary table (tiny sizes: ``BENCH_SMOKE=1``)."""
    out = tmp_path / "bench"
    out.mkdir()
    stale = {"rows": [{"name": "Proxy reverse-KL fwd+bwd / label-smoothed CE, GPU (old run)", "median": 1.5,
                       "min": 1.5, "max": 1.5, "target": "<= 2"}]}
    (out / "proxy_gpu.json").write_text(json.dumps(stale))  # an older run's row must never reappear
    env = {**os.environ, "BENCH_SMOKE": "1", "BENCH_OUT": str(out), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["make", "-o", ".venv/.endist-installed", f"BIN={Path(sys.executable).parent}", "bench"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    assert "make bench: 1 torch/OpenMP thread(s) per benchmark" in proc.stdout
    proxy_out = proc.stdout.split("== proxy_loss_speed.py", 1)[1].split("\n== ", 1)[0]  # that script's own table
    rows = dict(re.findall(r"^\| (\w+) \| [\d.]+ \| ([\d.]+)x \| [\d.]+-[\d.]+ \|", proxy_out, flags=re.M))
    assert set(rows) == {"cross_entropy", "proxy_reverse", "dirichlet_nll", "ensemble_kd"}, proc.stdout
    assert float(rows["cross_entropy"]) == 1.0 and all(float(v) > 0 for v in rows.values())
    assert "torch threads 1; 2 interleaved rounds" in proc.stdout
    speed = dict(re.findall(r"^\| (\w+) \| \[[\d, ]+\] \| [\d,]+ \| [\d,]+ \| ([\d.]+) \|", proc.stdout, flags=re.M))
    assert set(speed) == {"single", "ensemble", "batchensemble", "hydra", "latentbe_merged"}, proc.stdout
    assert float(speed["single"]) == 1.0

    summary = proc.stdout.split("## make bench: every ratio with its target", 1)[1]
    table = {m[0]: m[1:] for m in re.findall(r"^\| (.+?) \| (\S+) \| (\S+) \| (.+?) \| (.+?) \|$", summary, flags=re.M)}
    assert "student update with the teacher cache / plain training" in table  # issue 15's row
    proxy = json.loads((out / "proxy_cpu.json").read_text())["rows"][0]
    median, spread, target, verdict = table[proxy["name"]]
    assert target == "<= 3" and verdict == ("PASS" if proxy["median"] <= 3 else "FAIL")
    assert float(median) == float(f"{proxy['median']:.3g}") and proxy["min"] <= proxy["median"] <= proxy["max"]
    gpu = [name for name in table if "GPU" in name]
    assert len(gpu) == 2 and all(table[n][3].startswith("not measured (no CUDA") and table[n][0] == "–" for n in gpu)
    assert not any("old run" in name for name in table) and not (out / "proxy_gpu.json").exists()
    malloc = [name for name in table if name.startswith("malloc settings on/off")]
    assert len(malloc) == 2 and all(table[n][2] == ">= 1" and table[n][3] in ("PASS", "FAIL") for n in malloc)
    generate = [name for name in table if name.startswith("fairseq-generate --compute-uncertainty")]
    assert len(generate) == 1 and table[generate[0]][3].startswith("not measured (needs toy teachers")
    ceiling = [name for name in table if "ceiling of vectorising" in name]  # no target: a measured bound
    assert len(ceiling) == 2 and all(table[n][2:] == ("–", "–") and float(table[n][0]) > 0 for n in ceiling), ceiling
    if not (REPO / "scripts" / "benchmarks" / "vision_speed.py").exists():  # another benchmark plugs in here
        assert "note: vision_speed.py is not in this checkout" in proc.stdout
