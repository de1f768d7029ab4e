"""Paper-style markdown tables ([EnD2] Tables 1–4, [Hydra] Table 1, shift-set rows for [LatentBE] Table 4 /
[Proxy] Table 1) and figures: ID-vs-OOD uncertainty
histograms ([EnD2] Fig. 4) and rejection curves via :mod:`shared.plots`, and 2-D uncertainty maps
([EnD2] Fig. 3) for the spiral data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shared.plots import save_figure_atomic  # noqa: E402

MAP_TITLES = {"total": "Total Uncertainty", "data": "Data Uncertainty", "mutual_information": "Knowledge Uncertainty"}


def _f(v: Any, scale: float = 1.0, digits: int = 2) -> str:
    """A table cell; "–" for a measure that is undefined (``null`` in eval.json) or absent."""
    return "–" if v is None else f"{scale * float(v):.{digits}f}"


def single_run_markdown(title: str, res: dict[str, Any]) -> str:
    """Markdown for one evaluated model: [EnD2] Table 3 rows, Table 4 rows, [Hydra] Table 1 rows."""
    t = res["test"]
    lines = [f"## {title} ({res['kind']})", "", "| Crit. | Value |", "|---|---|"]
    rows = [("ERR (%)", t["error"], 1, 2), ("PRR conf. (%)", t["prr_confidence"], 100, 1), ("PRR entropy (%)", t["prr_entropy"], 100, 1),
            ("PRR MI (%)", t.get("prr_mutual_information"), 100, 1), ("ECE (%)", t["ece"], 100, 2), ("NLL", t["nll"], 1, 3),
            ("Brier", t["brier"], 1, 4), ("Cal. NLL", t["calibrated_nll"], 1, 3), ("Cal. ECE (%)", t["calibrated_ece"], 100, 2),
            ("Temperature", t["temperature"], 1, 3)]
    lines += [f"| {n} | {_f(v, s, d)} |" for n, v, s, d in rows]
    if "members" in res:
        lines.append(f"| Individual ERR (%) | {_f(res['members']['error'])} ± {_f(2 * res['members']['error_std'])} |")
    if res.get("ood"):
        lines += ["", "| OOD data | Unc. | % ROC-AUC | % PR-AUC |", "|---|---|---|---|"]
        for name, o in res["ood"].items():
            lines.append(f"| {name} | T.Unc | {_f(o['total_roc_auc'], 100, 1)} | {_f(o['total_pr_auc'], 100, 1)} |")
            lines.append(f"|  | K.Unc | {_f(o.get('knowledge_roc_auc'), 100, 1)} | {_f(o.get('knowledge_pr_auc'), 100, 1)} |")
    if res.get("shift"):
        lines += ["", shift_markdown(res["shift"])]
    if res.get("vs_teacher"):
        lines += ["", "| Set | MAD total | MAD data | MAD knowledge |", "|---|---|---|---|"]
        for name, g in res["vs_teacher"].items():
            lines.append(f"| {name} | {_f(g['mad_total'], 1, 4)} | {_f(g['mad_data'], 1, 4)} | {_f(g['mad_mutual_information'], 1, 4)} |")
    return "\n".join(lines) + "\n"


SHIFT_COLS = [("Acc (%)", "accuracy", 100, 2), ("NLL", "nll", 1, 3), ("ECE (%)", "ece", 100, 2), ("Brier", "brier", 1, 4),
              ("cNLL", "calibrated_nll", 1, 3), ("cECE (%)", "calibrated_ece", 100, 2)]


def shift_markdown(shift: dict[str, Any]) -> str:
    """Labelled shift sets: one row per set (mean over corruption × severity for corrupted sets) and one
    row per severity; cNLL/cECE use the temperature fitted on the in-distribution validation split."""
    head = "| Shift set | Images | " + " | ".join(c for c, *_ in SHIFT_COLS) + " |"
    lines = [head, "|---|---|" + "---|" * len(SHIFT_COLS)]
    for name, r in shift.items():
        what = f"{name} (mean)" if "per_severity" in r else name
        lines.append(f"| {what} | {r['n']} | " + " | ".join(_f(r["mean"].get(k), sc, d) for _, k, sc, d in SHIFT_COLS) + " |")
        for sev, m in (r.get("per_severity") or {}).items():
            lines.append(f"| {name} s{sev} |  | " + " | ".join(_f(m.get(k), sc, d) for _, k, sc, d in SHIFT_COLS) + " |")
    return "\n".join(lines)


def compare_markdown(results: dict[str, dict[str, Any]], title: str = "") -> str:
    """Columns = models. [EnD2] Table 3 (ERR, PRR, ECE, NLL) then Table 4 (OOD % ROC-AUC, T.Unc/K.Unc)."""
    labels = list(results)
    head = "| Crit. | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels)
    out = [f"### {title}" if title else "", head]
    for name, key, sc, d in [("ERR", "error", 1, 2), ("PRR", "prr_confidence", 100, 1), ("ECE", "ece", 100, 2), ("NLL", "nll", 1, 3),
                              ("Cal. NLL", "calibrated_nll", 1, 3), ("Brier", "brier", 1, 4)]:
        out.append(f"| {name} | " + " | ".join(_f(results[l]["test"].get(key), sc, d) for l in labels) + " |")
    shifts: list[str] = []
    for r in results.values():
        shifts += [o for o in r.get("shift", {}) if o not in shifts]
    for sname in shifts:  # extra rows: mean over the set (all corruptions x severities for corrupted sets)
        for name, key, sc, d in [("ERR", "error", 1, 2), ("ECE", "ece", 100, 2), ("NLL", "nll", 1, 3), ("Cal. NLL", "calibrated_nll", 1, 3),
                                  ("Cal. ECE", "calibrated_ece", 100, 2), ("Brier", "brier", 1, 4)]:
            vals = [_f(results[l].get("shift", {}).get(sname, {}).get("mean", {}).get(key), sc, d) for l in labels]
            out.append(f"| {sname} {name} | " + " | ".join(vals) + " |")
    oods: list[str] = []
    for r in results.values():
        oods += [o for o in r.get("ood", {}) if o not in oods]
    if oods:
        out += ["", "| OOD data | Unc. | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
        for o in oods:
            for unc, key in (("T.Unc", "total_roc_auc"), ("K.Unc", "knowledge_roc_auc")):
                vals = [_f(results[l].get("ood", {}).get(o, {}).get(key), 100, 1) for l in labels]
                out.append(f"| {o if unc == 'T.Unc' else ''} | {unc} | " + " | ".join(vals) + " |")
    return "\n".join(x for x in out if x is not None) + "\n"


def plot_uncertainty_map(grids: dict[str, np.ndarray], extent: float, path: str | Path, title: str = "",
                         points: np.ndarray | None = None, labels: np.ndarray | None = None) -> str:
    """One row of [EnD2] Fig. 3: total / data / knowledge uncertainty over the 2-D input plane."""
    return plot_uncertainty_maps({title: grids}, extent, path, points, labels)


def plot_uncertainty_maps(rows: dict[str, dict[str, np.ndarray]], extent: float, path: str | Path,
                          points: np.ndarray | None = None, labels: np.ndarray | None = None) -> str:
    """[EnD2] Fig. 3: a row per model (ensemble, EnD², EnD²+AUX, ...), columns total/data/knowledge."""
    n = len(rows)
    fig, axes = plt.subplots(n, 3, figsize=(10.5, 3.3 * n), squeeze=False)
    for r, (name, grids) in enumerate(rows.items()):
        for c, key in enumerate(("total", "data", "mutual_information")):
            ax = axes[r, c]
            im = ax.imshow(grids[key], origin="lower", extent=(-extent, extent, -extent, extent), cmap="viridis")
            if points is not None:
                ax.scatter(points[:, 0], points[:, 1], s=0.3, c="white" if labels is None else labels, cmap="autumn", alpha=0.3)
            ax.set_title(f"{name}: {MAP_TITLES[key]}" if name else MAP_TITLES[key], fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure_atomic(fig, str(path))


def grid_points(extent: float, size: int) -> np.ndarray:
    """``size × size`` grid over [−extent, extent]², row-major with y as the row (for imshow)."""
    xs = np.linspace(-extent, extent, size)
    gx, gy = np.meshgrid(xs, xs)
    return np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def plot_training_data(sets: Sequence[tuple[str, np.ndarray, np.ndarray | None]], path: str | Path, extent: float) -> str:
    """[EnD2] Fig. 2: the spiral data (coloured by class) and, optionally, the AUX ring."""
    fig, ax = plt.subplots(figsize=(4, 4))
    for name, pts, lab in sets:
        ax.scatter(pts[:, 0], pts[:, 1], s=1, c=lab if lab is not None else "grey", cmap="brg" if lab is not None else None, label=name)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    return save_figure_atomic(fig, str(path))
