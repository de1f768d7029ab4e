#!/usr/bin/env python
"""Demo part 70: students trained from the top-k teacher cache vs from the full cached outputs (issue 15).

Digits (8×8, 10 classes, 5-member digits_cnn ensemble, the one of part 50 when it exists): EnD, EnD² and
Proxy-EnD² students trained with ``distill.teacher_mode=cached`` (every member's full [N, M, K] log-probs)
and with ``distill.teacher_mode=topk_cache`` at k = 3 and k = 5 (the compact ``shared.teacher_cache`` record on
disk), same seeds and settings otherwise; one table of % error, NLL, ECE and OOD % ROC-AUC (total / knowledge
uncertainty) from ``endist-vision evaluate`` / ``compare``, and the cache's bytes per image.

    python scripts/demo/teacher_cache_digits.py --out demo_output/teacher_cache [--smoke]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vision_cli import run  # noqa: E402



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="demo_output/teacher_cache")
    ap.add_argument("--ensemble", default="", help="an existing digits ensemble run (default: part 50's, else train one)")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    runs, evals = out / "runs", out / "eval"
    t0 = time.time()
    common = ["train.progress=false"] + (["train.max_steps=20"] if a.smoke else [])
    ens = Path(a.ensemble) if a.ensemble else out.parent / "vision_digits" / "runs" / "ensemble"
    if not (ens / "checkpoints" / "final.pt").is_file():
        ens = runs / "ensemble"
        run(["train", "--config", "digits/ensemble", "--out", ens, *common])
    methods = [("EnD²", "end2")] if a.smoke else [("EnD", "end"), ("EnD²", "end2"), ("Proxy-EnD²", "proxy_end2")]
    modes = [("top-3", ["distill.teacher_mode=topk_cache", "distill.topk=3"])]
    if not a.smoke:
        modes = [("full", ["distill.teacher_mode=cached"])] + modes + [("top-5", ["distill.teacher_mode=topk_cache", "distill.topk=5"])]
    pairs = []
    for label, m in methods:
        for mode, flags in modes:
            name = f"{m}_{mode.replace('-', '')}"
            run(["train", "--config", f"digits/{m}", "--out", runs / name, f"distill.teacher={ens}", *common, *flags])
            run(["evaluate", "--run", runs / name, "--out", evals / name, "--label", f"{label} {mode}", "--no-plots"])
            pairs.append((f"{label} {mode}", name))
    run(["compare", *[f"{label}={evals / name}" for label, name in pairs], "--out", out,
         "--title", "Digits: students from every member's outputs (full) vs the top-k teacher cache (same seeds)"])
    for manifest in sorted(runs.glob("*/teacher_cache/manifest.json")):
        info = json.loads(manifest.read_text())
        print(f"{manifest.parent.parent.name}: {info['bytes_per_image']} bytes per image in the cache "
              f"(every member's full log-probs: {4 * info['members'] * info['key']['num_classes']})")
    print(f"tables: {out / 'tables.md'}")
    print(f"teacher-cache demo: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
