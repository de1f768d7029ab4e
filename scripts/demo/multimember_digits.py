#!/usr/bin/env python
"""Demo part 60: multi-member students on scikit-learn digits (issue #6).

Trains (in one process, through ``endist_vision.cli.main``) a 5-member digits_cnn teacher ensemble,
the single-student baselines EnD, EnD², Proxy-EnD² and the multi-member students Hydra,
BatchEnsemble, LatentBE and LatentBE + TDiv−SDiv; evaluates each with ``endist-vision evaluate``
and prints one table: accuracy, NLL, ECE (15 bins) and OOD ROC-AUC (inverted / rotated / noise
digits, averaged) with total uncertainty (entropy of the predictive) and, where the model has it,
knowledge uncertainty (mutual information).  "Individual" is the ensemble's first member alone.

    python scripts/demo/multimember_digits.py --out demo_output/vision_multimember [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from endist_vision.cli import main as cli  # noqa: E402

#: (label, recipe, extra overrides, forward passes of the base network per image at inference)
STUDENTS = [
    ("EnD", "digits_end", [], "1"),
    ("EnD²", "digits_end2", [], "1"),
    ("Proxy-EnD²", "digits_proxy_end2", [], "1"),
    ("Hydra", "digits_hydra", [], "1 body + M heads"),
    ("BE (KD)", "digits_batchensemble", [], "M (one M·B pass)"),
    ("LatentBE (merged)", "digits_latentbe", [], "1"),
    ("LatentBE + TDiv−SDiv (merged)", "digits_latentbe_tdiv", [], "1"),
]


LOG: list[Path] = []


def run(argv: list[str]) -> None:
    """``endist-vision ARGV`` in this process; its report goes to the part's log file."""
    with open(LOG[0], "a") as f, contextlib.redirect_stdout(f):
        print(f"$ endist-vision {' '.join(argv)}", flush=True)
        rc = cli(argv)
    if rc != 0:
        raise SystemExit(f"endist-vision {' '.join(argv)} failed with exit code {rc} (log: {LOG[0]})")
    print(f"  done: endist-vision {argv[0]} {argv[-1] if argv[0] == 'evaluate' else argv[4]}", flush=True)


def row(label: str, cost: str, ev: dict) -> str:
    t = ev["test"]
    oods = ev["ood"].values()
    auc_t = sum(o["total_roc_auc"] for o in oods) / len(oods)
    one_member = ev["kind"] == "ensemble" and int(ev.get("num_members", 1)) == 1
    single = ev["kind"] == "categorical" or one_member
    auc_k = ("–" if single or any(o.get("knowledge_roc_auc") is None for o in oods)
             else f"{100 * sum(o['knowledge_roc_auc'] for o in oods) / len(oods):.1f}")
    kind = "single" if one_member else ev["kind"]
    return (f"| {label} | {kind} | {cost} | {100 * t['accuracy']:.2f} | {t['nll']:.4f} | {t['ece']:.4f} | "
            f"{100 * auc_t:.1f} | {auc_k} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_output/vision_multimember")
    p.add_argument("--smoke", action="store_true", help="a few steps per run (keeps the demo from rotting in tests)")
    p.add_argument("--epochs", type=int, default=8, help="epochs of every run (the recipes say 20; 8 keeps the part at minutes)")
    p.add_argument("--members", type=int, default=5)
    a = p.parse_args(argv)
    if a.epochs < 1 or a.members < 2:
        p.error("--epochs must be >= 1 and --members >= 2")
    out = Path(a.out)
    runs = out / "runs"
    if runs.exists():  # this part's own previous outputs only
        shutil.rmtree(runs)
    out.mkdir(parents=True, exist_ok=True)
    LOG.append(out / "log.txt")
    LOG[0].write_text("")
    length = ["train.max_steps=6", "train.log_every=3"] if a.smoke else [f"train.epochs={a.epochs}"]
    common = ["train.progress=false", *length]
    t0 = time.time()
    ens = runs / "ensemble"
    run(["train", "--config", "digits_ensemble", "--out", str(ens), f"method_args.members={a.members}", *common])
    evals: list[tuple[str, str, Path]] = []
    run(["evaluate", "--run", str(ens), "--out", str(ens / "eval_individual"), "--members", "1"])
    evals.append(("Individual (member 1)", "1", ens / "eval_individual"))
    run(["evaluate", "--run", str(ens)])
    evals.append((f"Ensemble (M={a.members})", "M", ens / "eval"))
    for label, recipe, extra, cost in STUDENTS:
        d = runs / recipe.removeprefix("digits_")
        run(["train", "--config", recipe, "--out", str(d), f"distill.teacher={ens}", *common, *extra])
        run(["evaluate", "--run", str(d)])
        evals.append((label, cost, d / "eval"))
    lines = [
        f"## Digits (8×8), digits_cnn, teacher ensemble M={a.members}{' — SMOKE settings' if a.smoke else ''}",
        "",
        "OOD ROC-AUC (%) averaged over inverted / rotated / noise digits; T = total uncertainty (entropy),",
        "K = knowledge uncertainty (mutual information; ensembles and multi-member students only).",
        "",
        "| Model | read as | inference cost (base passes) | Acc % | NLL | ECE | AUROC T | AUROC K |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, cost, d in evals:
        lines.append(row(label, cost, json.loads((d / "eval.json").read_text())))
    lines += ["", f"(trained and evaluated in {time.time() - t0:.0f} s)"]
    table = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
