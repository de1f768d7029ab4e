"""Demo part 10: what the `shared` core computes, checked on a known Dirichlet.

1. Ensembles of M members sampled from Dir(α): their measured total / data / knowledge
   uncertainty converge to the closed forms of `dirichlet_uncertainty(α)`.
2. `proxy_target` recovers the Dirichlet's precision α₀ from the sampled ensemble.
3. A Proxy-Dirichlet student (reverse KL, [Proxy]) fitted by gradient descent to an
   ensemble recovers its mean and knowledge uncertainty.
4. Misclassification (PRR) and OOD (AUROC) detection scores on a synthetic task.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from shared.dirichlet import proxy_target
from shared.losses import proxy_dirichlet_loss
from shared.metrics import ood_detection_scores, prediction_rejection_ratio
from shared.plots import plot_rejection_curves, plot_uncertainty_histograms
from shared.uncertainty import UNCERTAINTY_KEYS, alphas_from_logits, dirichlet_uncertainty, ensemble_uncertainty


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="demo_output/shared_core")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    alpha = torch.tensor([8.0, 3.0, 1.0], dtype=torch.float64)
    closed = dirichlet_uncertainty(alpha)

    sizes = [10, 100] if args.smoke else [10, 100, 1000, 100_000]
    print("1. Ensemble of M members sampled from Dir(8, 3, 1) vs closed forms")
    print("| M | " + " | ".join(UNCERTAINTY_KEYS) + " | proxy β̂₀ (true 12) |")
    print("|---:|" + "---:|" * (len(UNCERTAINTY_KEYS) + 1))
    rows = {}
    for m in sizes:
        members = torch.distributions.Dirichlet(alpha).sample((m,)).clamp_min(1e-300).log().unsqueeze(0)
        est = ensemble_uncertainty(members)
        beta0 = float(proxy_target(members, estimator="epkl", offset=0.0).precision[0])
        rows[m] = {k: float(v[0]) for k, v in est.items()} | {"proxy_precision": beta0}
        print(f"| {m} | " + " | ".join(f"{float(est[k][0]):.4f}" for k in UNCERTAINTY_KEYS) + f" | {beta0:.2f} |")
    print("| closed form | " + " | ".join(f"{float(closed[k]):.4f}" for k in UNCERTAINTY_KEYS) + " | 12 |")

    print("\n2. Proxy-EnD² student: fit logits z by reverse KL to the Proxy-Dirichlet of a 50-member ensemble")
    members = torch.distributions.Dirichlet(alpha).sample((50,)).log().unsqueeze(0)
    z = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(100 if args.smoke else 1500):
        opt.zero_grad()
        proxy_dirichlet_loss(z, members, model_offset=1.0, target_offset=1.0).backward()
        opt.step()
    student = dirichlet_uncertainty(alphas_from_logits(z.detach(), offset=1.0))
    ens = ensemble_uncertainty(members)
    print("| model | total | data | mutual_information | confidence |")
    print("|---|---:|---:|---:|---:|")
    for name, u in (("ensemble (50)", ens), ("Proxy-EnD² student", student)):
        print(f"| {name} | " + " | ".join(f"{float(u[k][0] if u[k].dim() else u[k]):.4f}" for k in ("total", "data", "mutual_information", "confidence")) + " |")

    print("\n3. Detection on a synthetic 10-class task (ID: sharp ensembles, OOD: members disagree)")
    n = 500 if args.smoke else 5000
    k = 10
    id_logits = torch.randn(n, 1, k) * 3 + torch.randn(n, 5, k) * 0.5
    ood_logits = torch.randn(n, 5, k) * 3
    id_u, ood_u = ensemble_uncertainty(torch.log_softmax(id_logits, -1)), ensemble_uncertainty(torch.log_softmax(ood_logits, -1))
    labels = torch.distributions.Categorical(logits=id_logits.mean(1)).sample()
    errors = (torch.log_softmax(id_logits, -1).exp().mean(1).argmax(-1) != labels).double()
    print("| measure | PRR (ID misclassification) | OOD ROC-AUC | OOD PR-AUC |")
    print("|---|---:|---:|---:|")
    results = {}
    for key in ("total", "data", "mutual_information", "epkl", "rmi"):
        prr = prediction_rejection_ratio(id_u[key], errors)
        ood = ood_detection_scores(id_u[key], ood_u[key])
        results[key] = {"prr": prr} | ood
        print(f"| {key} | {prr:.3f} | {ood['roc_auc']:.3f} | {ood['pr_auc']:.3f} |")
    plot_rejection_curves(errors, {k: id_u[k] for k in ("total", "mutual_information")}, os.path.join(args.out, "rejection.png"))
    plot_uncertainty_histograms(id_u["mutual_information"], {"OOD": ood_u["mutual_information"]}, os.path.join(args.out, "mi_hist.png"), "mutual information")
    tmp = os.path.join(args.out, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"ensemble_vs_closed_form": rows, "detection": results}, f, indent=2)
    os.replace(tmp, os.path.join(args.out, "results.json"))
    print(f"\nwrote {args.out}/results.json, rejection.png, mi_hist.png")


if __name__ == "__main__":
    main()
