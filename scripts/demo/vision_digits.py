#!/usr/bin/env python
"""Demo part 50: digits ID/OOD table (issue #5), laid out like [EnD2] Tables 3–4.

Trains a 5-member digits_cnn ensemble on scikit-learn's 8×8 digits, an individual model, and EnD,
EnD², Proxy-EnD² students (plus EnD² + AUX with pixel-shuffled digits as auxiliary transfer data);
evaluates each with ``endist-vision evaluate`` (OOD sets: inverted, rotated and uniform-noise images)
and prints % error, % PRR, % ECE, NLL, and OOD % ROC-AUC with total / knowledge uncertainty.

    python scripts/demo/vision_digits.py --out demo_output/vision_digits [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vision_cli import run  # noqa: E402



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="demo_output/vision_digits")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    runs, evals = out / "runs", out / "eval"
    t0 = time.time()
    common = ["train.progress=false"] + (["train.max_steps=20"] if a.smoke else [])
    run(["train", "--config", "digits/ensemble", "--out", runs / "ensemble", *common])
    run(["train", "--config", "digits/individual", "--out", runs / "individual", *common])
    ens = runs / "ensemble"
    students = [("EnD", "end", []), ("EnD²", "end2", []), ("Proxy-EnD²", "proxy_end2", []), ("EnD²+AUX", "end2", ["data.aux=digits_shuffled"])]
    for label, m, extra in students:
        name = f"{m}{'_aux' if extra else ''}"
        run(["train", "--config", f"digits/{m}", "--out", runs / name, f"distill.teacher={ens}", *common, *extra])
    print(f"trained ({time.time() - t0:.0f} s)", flush=True)
    pairs = [("IND", "individual"), ("ENSM", "ensemble"), ("EnD", "end"), ("EnD²", "end2"), ("Proxy-EnD²", "proxy_end2"), ("EnD²+AUX", "end2_aux")]
    for label, name in pairs:
        run(["evaluate", "--run", runs / name, "--out", evals / name, "--label", label])
    run(["compare", *[f"{label}={evals / name}" for label, name in pairs], "--out", out,
         "--title", "Digits (8×8, 5-member digits_cnn ensemble): % error, PRR, ECE, NLL; OOD % ROC-AUC — [EnD2] Tables 3–4 layout"])
    print(f"tables: {out / 'tables.md'}; per-model markdown/PNGs under {evals}/")
    print(f"digits demo: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
