"""Print [Proxy] Tables 1-2 (image classification) in the paper's layout from `endist-vision evaluate` outputs.

    python _imagenet_table.py --out tables.md --set ImageNet-O=<ood label> ... --model NAME=EVAL_DIR ...

Table 1: accuracy / ECE (%) on ImageNet-val (the in-domain test split) and on the shifted sets. The
shifted sets are evaluated as unlabeled OOD image folders, so their accuracy / ECE cells are `n/a`
(see README.md, "Gaps"). Table 2: OOD ROC-AUC (%) with EoE (entropy of the expected distribution,
`total_roc_auc`) and RMI (reverse mutual information, `rmi_roc_auc`); RMI is `-` for single
categorical models (Single, EnD), as in the paper.
"""
import argparse
import json
import sys
from pathlib import Path


def _pair(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {s!r}")
    a, b = s.split("=", 1)
    return a, b


def _pct(v) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=_pair, action="append", required=True, help="NAME=EVAL_DIR (holding eval.json)")
    p.add_argument("--set", type=_pair, action="append", required=True, help="COLUMN=OOD_LABEL, e.g. ImageNet-A=imagenet-a")
    p.add_argument("--out", help="also write the tables here")
    a = p.parse_args(argv)
    res = {}
    for name, d in a.model:
        f = Path(d) / "eval.json"
        if not f.is_file():
            print(f"error: --model {name}: no eval.json in {d} (run 13_imagenet_evaluate.sh first)", file=sys.stderr)
            return 2
        res[name] = json.loads(f.read_text())
    for name, r in res.items():
        for col, label in a.set:
            if label not in r.get("ood", {}):
                print(f"error: --set {col}={label}: {name} has no OOD set {label!r} (has {sorted(r.get('ood', {}))})", file=sys.stderr)
                return 2
    shifts = [(c, l) for c, l in a.set if c != "ImageNet-O"]
    lines = ["Table 1: Prediction quality results for image classification.", ""]
    head = ["Model", "ImageNet-val Acc", "ImageNet-val ECE"] + [f"{c} {m}" for c, _ in shifts for m in ("Acc", "ECE")]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in res.items():
        cells = [name, _pct(r["test"]["accuracy"]), _pct(r["test"]["ece"])] + ["n/a"] * (2 * len(shifts))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Table 2: Out-of-distribution detection results for image classification (ROC-AUC, %).", ""]
    head = ["Model"] + [f"{c} {m}" for c, _ in a.set for m in ("EoE", "RMI")]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in res.items():
        knowledge = int(r.get("num_members", 1)) > 1 or r.get("method") in ("end2", "proxy_end2")
        cells = [name]
        for _, label in a.set:
            o = r["ood"][label]
            cells += [_pct(o.get("total_roc_auc")), _pct(o.get("rmi_roc_auc")) if knowledge else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if a.out:
        tmp = Path(a.out).with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(a.out)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
