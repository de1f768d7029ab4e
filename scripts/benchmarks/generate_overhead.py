#!/usr/bin/env python
"""Overhead of ``--compute-uncertainty`` over plain ``fairseq-generate`` (issue #4 target: ≤ 10%).

Runs the same model(s), data, beam and batch size through

* plain:        ``fairseq-generate DATA --task translation --path P ...``
* uncertainty:  ``fairseq-generate DATA --user-dir endist_seq --task translation_uncertainty --compute-uncertainty ...``

``--repeats`` times each, alternating the order, and reports the median of

* **wall** — the whole command (process start, imports, model loading, generation, output);
* **loop** — fairseq's own generation timer (the "Translated N sentences ... in X s" line:
  ``task.inference_step`` for all batches, which includes our teacher-forced scoring);
* **cpu** — user + system CPU seconds of the command (``getrusage`` of the child), the
  steadiest of the three on a shared, loaded machine.

The ratio ``uncertainty / plain`` of each is the overhead. It also checks that the two
runs print identical hypotheses. With ``--ep-share`` it also runs ``ep_measures_share.py``
``--repeats`` times: the time of the expectation-of-products measures (issue 14) relative to the
generation loop without them (median ``ep_extra``; issue 14's target ≤ 3%). Usage::

    python scripts/benchmarks/generate_overhead.py --data DATA_BIN --paths a.pt:b.pt [--subset test]
    python scripts/benchmarks/generate_overhead.py --toy-dir bench_output/toy   # builds the toy teachers if needed

Writes ``--out`` (JSON, default ``bench_output/generate_overhead.json``) atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOOP_RE = re.compile(r"Translated [\d,]+ sentences \([\d,]+ tokens\) in ([\d.]+)s")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _generate(cmd: List[str]) -> Tuple[float, float, float, List[str]]:
    start, cpu_start = time.perf_counter(), _cpu_children()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _cpu_children() - cpu_start
    if proc.returncode != 0:
        sys.exit(f"error: command failed (rc={proc.returncode}): {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-3000:]}")
    match = LOOP_RE.search(proc.stdout + proc.stderr)
    if match is None:
        sys.exit(f"error: no 'Translated ... in Xs' line in the output of: {' '.join(cmd)}")
    hyps = [line for line in proc.stdout.splitlines() if line.startswith("H-")]
    return wall, float(match.group(1)), cpu, hyps


def _toy(toy_dir: Path) -> Tuple[Path, str]:
    paths = [toy_dir / "teachers" / f"teacher{i}" / "checkpoint_last.pt" for i in (1, 2)]
    if not all(p.is_file() for p in paths):
        env = _env() | {"TEACHERS": "2", "PYTHON": sys.executable}
        subprocess.run(["bash", str(REPO / "scripts/seq/toy_pipeline.sh"), str(toy_dir), "teachers"], cwd=REPO, env=env, check=True)
    return toy_dir / "data-bin", ":".join(map(str, paths))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="fairseq data-bin directory")
    parser.add_argument("--paths", help="checkpoints, colon-separated (an ensemble) or one")
    parser.add_argument("--toy-dir", type=Path, default=Path("bench_output/toy"), help="toy pipeline dir (used without --data)")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--nbest", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench_output/generate_overhead.json"))
    parser.add_argument("--ep-share", action="store_true", help="also time the EP chain-rule measures in-process")
    args = parser.parse_args()
    if (args.data is None) != (args.paths is None):
        parser.error("give both --data and --paths, or neither (then the toy teachers are used)")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    data, paths = (args.data, args.paths) if args.data else _toy(args.toy_dir)
    common = [str(data), "--path", paths, "--gen-subset", args.subset, "--beam", str(args.beam), "--nbest", str(args.nbest),
              "--batch-size", str(args.batch_size), "--cpu", "--num-workers", "0"]
    plain_cmd = [str(BIN / "fairseq-generate"), *common, "--user-dir", "endist_seq", "--task", "translation"]
    unc_cmd = [str(BIN / "fairseq-generate"), *common, "--user-dir", "endist_seq", "--task", "translation_uncertainty",
               "--compute-uncertainty"]
    runs: Dict[str, Dict[str, List[float]]] = {
        name: {"wall": [], "loop": [], "cpu": []} for name in ("plain", "uncertainty")
    }
    hyps: Dict[str, List[str]] = {}
    for rep in range(args.repeats):
        order = [("plain", plain_cmd), ("uncertainty", unc_cmd)]
        for name, cmd in order if rep % 2 == 0 else order[::-1]:
            wall, loop, cpu, h = _generate(cmd)
            runs[name]["wall"].append(wall)
            runs[name]["loop"].append(loop)
            runs[name]["cpu"].append(cpu)
            hyps[name] = h
            print(f"repeat {rep + 1}/{args.repeats} {name:12s} wall {wall:7.2f} s   generation loop {loop:7.2f} s"
                  f"   process CPU {cpu:7.2f} s", flush=True)
    if hyps["plain"] != hyps["uncertainty"]:
        sys.exit("error: --compute-uncertainty changed the hypotheses")
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in runs.items()}
    result = {
        "config": {"data": str(data), "paths": paths, "subset": args.subset, "beam": args.beam, "nbest": args.nbest,
                   "batch_size": args.batch_size, "repeats": args.repeats, "threads": _env()["OMP_NUM_THREADS"]},
        "runs": runs,
        "median": med,
        "ratio_wall": med["uncertainty"]["wall"] / med["plain"]["wall"],
        "ratio_loop": med["uncertainty"]["loop"] / med["plain"]["loop"],
        "ratio_cpu": med["uncertainty"]["cpu"] / med["plain"]["cpu"],
        "identical_hypotheses": True,
    }
    if args.ep_share:
        shares = []
        for rep in range(args.repeats):
            proc = subprocess.run([sys.executable, str(REPO / "scripts/benchmarks/ep_measures_share.py"), *unc_cmd[1:], "--quiet"],
                                  cwd=REPO, env=_env(), capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("EP_SHARE ")]
            if proc.returncode != 0 or not line:
                sys.exit(f"error: ep_measures_share.py failed:\n{proc.stderr[-2000:]}")
            shares.append(json.loads(line[-1][len("EP_SHARE "):]))
            print(f"repeat {rep + 1}/{args.repeats} EP measures {shares[-1]['ep_s']:.4f} s of generation loop "
                  f"{shares[-1]['inference_s']:.2f} s: +{100 * shares[-1]['ep_extra']:.2f}%", flush=True)
        result["ep_share_runs"] = shares
        result["ep_extra"] = statistics.median(s["ep_extra"] for s in shares)
    print(f"overhead (median of {args.repeats}): whole command x{result['ratio_wall']:.3f}, "
          f"generation loop x{result['ratio_loop']:.3f}, process CPU time x{result['ratio_cpu']:.3f}  (target <= 1.10)")
    if args.ep_share:
        print(f"EP chain-rule measures (median of {args.repeats}): +{100 * result['ep_extra']:.2f}% of the generation loop "
              "without them (target <= 3%)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(result, handle, indent=2)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
