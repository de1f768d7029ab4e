#!/usr/bin/env python
"""Demo part 40: the 3-spiral experiment of [EnD2] §4 (issue #5).

One process, through ``endist_vision.cli.main`` (the ``endist-vision`` console script):

1. trains an ensemble of 100 MLPs (different seeds and shuffles, one vectorised forward);
2. distils the first 10 and all 100 members into single MLPs with EnD (T = 2.5) and EnD² (T₀ = 10,
   annealed), and the 100-member ensemble with the AUX ring added to the transfer set;
3. evaluates every model with ``endist-vision evaluate`` and prints

   * Table 1 — % error on D_test (1000 points/class) for 10 and 100 members: Individual (mean over
     members ± 2σ), Ensemble, EnD, EnD²;
   * Table 2 — % error with D_trn vs D_trn + D_AUX (100 members);
   * an uncertainty table ([EnD2] Table 4 layout): OOD ROC-AUC on the AUX-ring region and farther out,
     with total (T.Unc) and knowledge (K.Unc) uncertainty; and the [Hydra]-style mean absolute
     difference of uncertainties vs the ensemble;
   * Fig. 2 (data, AUX ring) and Fig. 3 (total / data / knowledge uncertainty maps of the ensemble,
     EnD² and EnD²+AUX) as PNGs.

    python scripts/demo/vision_spirals.py --out demo_output/vision_spirals [--smoke]
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



def ev(d: Path) -> dict:
    return json.loads((d / "eval.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="demo_output/vision_spirals")
    ap.add_argument("--smoke", action="store_true", help="tiny settings (seconds), for tests")
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    runs = out / "runs"
    t0 = time.time()
    members = 10 if a.smoke else 100
    sub = 3 if a.smoke else 10
    quick = ["train.max_steps=20", "eval.grid_size=20"] if a.smoke else []
    common = ["train.progress=false", *quick]

    run(["train", "--config", "spirals/ensemble", "--out", runs / "ensemble", f"method_args.members={members}", *common])
    ens = runs / "ensemble"
    print(f"ensemble of {members} trained ({time.time() - t0:.0f} s)", flush=True)
    students = {}
    for n in (sub, members):
        for m in ("end", "end2"):
            d = runs / f"{m}_{n}"
            run(["train", "--config", f"spirals/{m}", "--out", d, f"distill.teacher={ens}", f"distill.teacher_members={n}", *common])
            students[(m, n, False)] = d
    for m in ("end", "end2"):
        d = runs / f"{m}_{members}_aux"
        run(["train", "--config", f"spirals/{m}", "--out", d, f"distill.teacher={ens}", "data.aux=spirals_ring", *common])
        students[(m, members, True)] = d
    print(f"students trained ({time.time() - t0:.0f} s)", flush=True)

    evals = out / "eval"
    for n in (sub, members):
        run(["evaluate", "--run", ens, "--members", n, "--out", evals / f"ensemble_{n}", "--label", f"Ensemble ({n})"])
    for (m, n, aux), d in students.items():
        label = f"{'EnD' if m == 'end' else 'EnD²'}{'+AUX' if aux else ''} ({n})"
        run(["evaluate", "--run", d, "--out", evals / d.name, "--label", label])
    print(f"evaluated ({time.time() - t0:.0f} s)", flush=True)

    def err(d: Path) -> float:
        return ev(d)["test"]["error"]

    lines = ["## Table 1 — % error on D_test (1000 points/class), 3 spiral classes ([EnD2] Table 1)", "",
             "| Num. models | Individual | Ensemble | EnD | EnD² |", "|---|---|---|---|---|"]
    for n in (sub, members):
        e = ev(evals / f"ensemble_{n}")
        lines.append(f"| {n} | {e['members']['error']:.2f} ± {2 * e['members']['error_std']:.2f} | {e['test']['error']:.2f} | "
                     f"{err(evals / f'end_{n}'):.2f} | {err(evals / f'end2_{n}'):.2f} |")
    e = ev(evals / f"ensemble_{members}")
    lines += ["", f"## Table 2 — % error, trained on D_trn or D_trn + D_AUX, {members} members ([EnD2] Table 2)", "",
              "| Distillation data | Individual | Ensemble | EnD | EnD² |", "|---|---|---|---|---|",
              f"| D_trn | {e['members']['error']:.2f} | {e['test']['error']:.2f} | {err(evals / f'end_{members}'):.2f} | {err(evals / f'end2_{members}'):.2f} |",
              f"| D_trn + D_AUX | {e['members']['error']:.2f} | {e['test']['error']:.2f} | {err(evals / f'end_{members}_aux'):.2f} | "
              f"{err(evals / f'end2_{members}_aux'):.2f} |", ""]
    lines += ["## Uncertainty vs the ensemble: mean |u_model − u_ensemble| ([Hydra] Table 1), "
              f"{members} members", "", "| Model | Set | total | data | knowledge |", "|---|---|---|---|---|"]
    for name in (f"end2_{members}", f"end2_{members}_aux"):
        for s, g in ev(evals / name)["vs_teacher"].items():
            lines.append(f"| {name} | {s} | {g['mad_total']:.4f} | {g['mad_data']:.4f} | {g['mad_mutual_information']:.4f} |")
    tables = "\n".join(lines) + "\n"
    (out / "tables.md").write_text(tables)
    print(tables)
    # [EnD2] Table 4 layout (OOD ROC-AUC with T.Unc / K.Unc) + Fig. 3 maps
    cmp = [f"Ensm={evals / f'ensemble_{members}'}", f"EnD={evals / f'end_{members}'}", f"EnD2={evals / f'end2_{members}'}",
           f"EnD+AUX={evals / f'end_{members}_aux'}", f"EnD2+AUX={evals / f'end2_{members}_aux'}"]
    run(["compare", *cmp, "--out", out / "table4", "--title", f"Spirals, {members} members: [EnD2] Table 3/4 layout"])
    run(["compare", f"Ensm={evals / f'ensemble_{members}'}", f"EnD2={evals / f'end2_{members}'}", f"EnD2+AUX={evals / f'end2_{members}_aux'}",
         "--out", out / "fig3", "--maps"])
    from endist_vision.data import load_dataset
    from endist_vision.report import plot_training_data

    b = load_dataset({"name": "spirals", "val_size": 300, "aux": "spirals_ring"})
    plot_training_data([("train", b.train.x.numpy(), b.train.y.numpy()), ("AUX", b.aux.x.numpy()[::2], None)], out / "fig2_spirals_aux.png", 2.5)
    print(f"Fig. 3 maps: {out / 'fig3' / 'uncertainty_maps.png'}; Fig. 2: {out / 'fig2_spirals_aux.png'}")
    print(f"spirals demo: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
