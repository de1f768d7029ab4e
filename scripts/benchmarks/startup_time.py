#!/usr/bin/env python
"""Start-up cost of the seq tools (issue 16): wall time of fresh Python processes.

Rows (median and min–max over ``--repeats`` rounds; each round runs every contender once, in
alternating order, so a busy machine slows them alike):

* ``endist-seq-eval --help``, seconds — the file-only report tool must not import torch, fairseq,
  scipy.stats, sklearn or matplotlib to print its usage (target ≤ 0.5 s);
* plugin import cost: ``import fairseq; import endist_seq`` (what ``fairseq-* --user-dir endist_seq``
  does) ÷ ``import fairseq`` alone, per round (target ≤ 1.1: the plugin costs only what fairseq costs).

    python scripts/benchmarks/startup_time.py                 # both rows, 5 rounds
    python scripts/benchmarks/startup_time.py --what help     # only the --help row (no fairseq import)
    python scripts/benchmarks/startup_time.py --json OUT      # rows for scripts/benchmarks/bench_table.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rows import row, summary, write_rows  # noqa: E402

#: the console script's body (``endist-seq-eval = endist_seq.eval_cli:main``)
EVAL_HELP = "import sys\nfrom endist_seq.eval_cli import main\nsys.exit(main(['--help']))"
FAIRSEQ_ONLY = "import fairseq"
FAIRSEQ_PLUGIN = "import fairseq\nimport endist_seq"


def wall_time(code: str) -> float:
    """Seconds for a fresh ``python -c code`` (output discarded; a failure raises)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(what: List[str], repeats: int) -> Dict[str, List[float]]:
    contenders = []
    if "help" in what:
        contenders.append(("help", EVAL_HELP))
    if "plugin" in what:
        contenders += [("fairseq", FAIRSEQ_ONLY), ("plugin", FAIRSEQ_PLUGIN)]
    times: Dict[str, List[float]] = {name: [] for name, _ in contenders}
    for r in range(repeats):
        for name, code in contenders if r % 2 == 0 else contenders[::-1]:
            times[name].append(wall_time(code))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--what", default="help,plugin", help="comma-separated subset of help,plugin")
    parser.add_argument("--json", help="write bench rows here")
    a = parser.parse_args()
    what = [w for w in a.what.split(",") if w]
    unknown = sorted(set(what) - {"help", "plugin"})
    if unknown or a.repeats < 1:
        parser.error(f"--what takes help,plugin (got {unknown}); --repeats must be >= 1")
    print(f"startup_time: {a.repeats} round(s), python {sys.executable}")
    times = measure(what, a.repeats)
    rows = []
    if "help" in what:
        s = summary(times["help"])
        print(f"endist-seq-eval --help: median {s['median']:.3f} s (min {s['min']:.3f}, max {s['max']:.3f})")
        rows.append(row("endist-seq-eval --help wall time, s", times["help"], "<= 0.5"))
    if "plugin" in what:
        ratios = [p / f for p, f in zip(times["plugin"], times["fairseq"])]
        s, f = summary(ratios), summary(times["fairseq"])
        print(f"import fairseq: median {f['median']:.3f} s; + import endist_seq: ratio median {s['median']:.3f} "
              f"(min {s['min']:.3f}, max {s['max']:.3f})")
        rows.append(row("import fairseq + endist_seq plugin / import fairseq, wall time", ratios, "<= 1.1"))
    if a.json:
        write_rows(a.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
