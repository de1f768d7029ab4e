"""The README's quick start: ``make demo`` and ``make bench`` run (smoke settings); its figure is one the demo makes.

``make test`` is this suite itself (``tests/test_readme.py`` checks that ``.ci/run`` calls it).
``make demo`` is run for real through make, with ``DEMO_SMOKE=1`` (tiny settings) and the interpreter running
these tests as the virtual environment (``BIN=``; ``-o`` stops make from rebuilding ``.venv``).
"""

from __future__ import annotations

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



def test_make_bench_smoke() -> None:
    """``make bench`` runs both benchmarks and prints their ratio tables (tiny sizes: ``BENCH_SMOKE=1``)."""
    env = {**os.environ, "BENCH_SMOKE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["make", "-o", ".venv/.endist-installed", f"BIN={Path(sys.executable).parent}", "bench"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    rows = dict(re.findall(r"^\| (\w+) \| [\d.]+ \| ([\d.]+)x \|", proc.stdout, flags=re.M))
    assert set(rows) == {"cross_entropy", "proxy_reverse", "dirichlet_nll", "ensemble_kd"}, proc.stdout
    assert float(rows["cross_entropy"]) == 1.0 and all(float(v) > 0 for v in rows.values())
    speed = dict(re.findall(r"^\| (\w+) \| \[[\d, ]+\] \| [\d,]+ \| [\d,]+ \| ([\d.]+) \|", proc.stdout, flags=re.M))
    assert set(speed) == {"single", "ensemble", "batchensemble", "hydra", "latentbe_merged"}, proc.stdout
    assert float(speed["single"]) == 1.0
