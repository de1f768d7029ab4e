"""Paper-style markdown tables ([EnD2] Tables 1–4, [Hydra] Table 1, shift-set rows for [LatentBE] Table 4 /
[Proxy] Table 1) and figures: ID-vs-OOD uncertainty
histograms ([EnD2] Fig. 4) and rejection curves via :mod:`shared.plots`, and 2-D uncertainty maps
([EnD2] Fig. 3) for the spiral data."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shared.plots import save_figure_atomic  # noqa: E402

from .errors import ConfigError, ResultFileError  # noqa: E402

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


# ---------------------------------------------------------------- reading evaluation outputs (compare)
TEST_KEYS = ("error", "prr_confidence", "ece", "nll", "calibrated_nll", "brier")
MAP_KEYS = ("total", "data", "mutual_information")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_numbers(d: Any, where: str, path: Path, keys: Sequence[str] | None = None) -> None:
    """``d`` is a mapping whose ``keys`` (default: all) are numbers or null, else :class:`ResultFileError`."""
    if not isinstance(d, dict):
        raise ResultFileError(f"{path}: not an endist-vision eval.json ({where} is {type(d).__name__}, expected a mapping)")
    for k in keys if keys is not None else list(d):
        v = d.get(k)
        if v is not None and not _is_number(v):
            raise ResultFileError(f"{path}: not an endist-vision eval.json ({where}.{k} = {v!r} is not a number)")


def read_eval_json(path: Path) -> dict[str, Any]:
    """An ``endist-vision evaluate`` result, checked for what :func:`compare_markdown` reads: ``test`` with a
    numeric ``error`` (and numbers or null for the other metrics), optional ``ood`` / ``shift`` mappings.

    Raises:
        ResultFileError: the file is unreadable, not JSON, or not an ``eval.json`` of endist-vision (one line
            naming the file)."""
    try:
        res = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ResultFileError(f"{path}: cannot read eval.json: {type(e).__name__}: {e}") from e
    if not isinstance(res, dict) or not isinstance(res.get("test"), dict) or not _is_number(res["test"].get("error")):
        raise ResultFileError(f"{path}: not an endist-vision eval.json (no numeric test.error; run endist-vision evaluate)")
    _check_numbers(res["test"], "test", path, TEST_KEYS)
    for section in ("ood", "shift"):
        if not isinstance(res.get(section) or {}, dict):
            raise ResultFileError(f"{path}: not an endist-vision eval.json ({section} is {type(res[section]).__name__}, expected a mapping)")
    for name, o in (res.get("ood") or {}).items():
        _check_numbers(o, f"ood.{name}", path, ("total_roc_auc", "knowledge_roc_auc"))
    for name, r in (res.get("shift") or {}).items():
        _check_numbers(r.get("mean") if isinstance(r, dict) else r, f"shift.{name}.mean", path)
    return res


def read_uncertainty_map(path: Path) -> dict[str, Any]:
    """``uncertainty_map.npz`` of a 2-D evaluation: equal-shape 2-D float grids ``total``, ``data``,
    ``mutual_information`` (may be absent for a single model: then all NaN, drawn blank) and a finite scalar
    ``extent`` (read with ``allow_pickle=False``: no code runs).

    Raises:
        ResultFileError: unreadable, not an npz, or keys/shapes not those of an uncertainty map."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ResultFileError(f"{path}: cannot read uncertainty map: {type(e).__name__}: {e}") from e
    if "mutual_information" not in arrays and "total" in arrays:  # a single model: knowledge uncertainty undefined ("–")
        arrays["mutual_information"] = np.full(np.shape(arrays["total"]), np.nan)
    missing = [k for k in (*MAP_KEYS, "extent") if k not in arrays]
    if missing:
        raise ResultFileError(f"{path}: not an uncertainty map (missing {', '.join(missing)}; has {', '.join(sorted(arrays)) or 'nothing'})")
    shape = arrays["total"].shape
    for k in MAP_KEYS:
        a = arrays[k]
        if a.ndim != 2 or a.shape != shape or a.dtype.kind not in "fiu":
            raise ResultFileError(f"{path}: {k} must be a 2-D numeric grid of the shape of total {shape}, got {a.dtype} {a.shape}")
    ext = arrays["extent"]
    if ext.size != 1 or ext.dtype.kind not in "fiu" or not math.isfinite(float(ext.reshape(-1)[0])) or float(ext.reshape(-1)[0]) <= 0:
        raise ResultFileError(f"{path}: extent must be one finite number > 0, got {ext!r}")
    return {**{k: arrays[k] for k in MAP_KEYS}, "extent": float(ext.reshape(-1)[0])}


def parse_compare_items(items: Sequence[str]) -> dict[str, Path]:
    """``LABEL=EVAL_DIR`` (or ``LABEL=path/eval.json``) items → ``{label: eval.json path}``; a malformed item or a
    label given twice is a :class:`ConfigError` naming it, a missing eval.json a :class:`ResultFileError`."""
    out: dict[str, Path] = {}
    for item in items:
        label, sep, d = item.partition("=")
        if not sep or not label or not d:
            raise ConfigError(f"compare: expected LABEL=EVAL_DIR, got {item!r}")
        if label in out:
            raise ConfigError(f"compare: label {label!r} is given twice ({out[label]} and {d}); labels must be unique")
        p = Path(d)
        f = p / "eval.json" if p.is_dir() else p
        if not f.is_file():
            raise ResultFileError(f"compare: {label}: no eval.json at {f} (run endist-vision evaluate first)")
        out[label] = f
    return out


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
