"""``endist-vision evaluate``: accuracy, NLL, ECE-15, Brier, calibrated NLL/ECE (temperature fitted on the
validation split), PRR ([EnD2] App. B, eq. 16) with confidence / entropy / mutual information, OOD
ROC-AUC and PR-AUC with total and knowledge uncertainty for every OOD set ([EnD2] Table 4), and the mean
absolute difference of uncertainties vs. the teacher ensemble ([Hydra] Table 1), and accuracy / NLL / ECE /
Brier / temperature-calibrated NLL and ECE on labelled distribution-shift sets (:func:`shift_metrics`;
corrupted sets averaged over all corruption × severity subsets and per severity).

How outputs are read (the output convention of ``README_internal.md``):

* ``[N, M, K]`` logits → ensemble: ``shared.uncertainty.ensemble_uncertainty(log_softmax)``,
  predictive p̄ = mean_m p_m ([EnD2] eq. 4);
* ``[N, K]`` with ``meta.output == "dirichlet"`` → α = exp(z) + offset,
  ``shared.uncertainty.dirichlet_uncertainty(α)``, predictive p̂ = α/α₀ ([EnD2] eq. 9–10);
* ``[N, K]`` categorical → softmax; total = entropy.

Knowledge uncertainty (mutual information, EPKL, RMI and every metric built on them) is undefined for a
categorical model and for a one-member ensemble (``--members 1``): eval.json holds ``null`` there and every
table prints "–" (as the papers do), instead of the meaningless 0 / ROC-AUC 50.

All metric math comes from :mod:`shared.metrics`; this module only gathers predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.metrics import (
    accuracy,
    brier_score,
    calibrated_scores,
    temperature_scaled_scores,
    expected_calibration_error,
    negative_log_likelihood,
    ood_detection_scores,
    prediction_rejection_ratio,
)
from shared.progress import progress
from shared.uncertainty import alphas_from_logits, dirichlet_uncertainty, ensemble_uncertainty

from .data.base import ArrayDataset
from .data.batches import iterate_batches
from .data.shift import ShiftSet

UNC_KEYS = ("total", "data", "mutual_information", "epkl", "rmi", "confidence")
KNOWLEDGE_KEYS = ("mutual_information", "epkl", "rmi")  # undefined (null) without several members / a Dirichlet


@dataclass
class Summary:
    """Predictive distribution and uncertainties of a model on one data set."""

    kind: str  # "ensemble" | "dirichlet" | "categorical"
    log_pred: torch.Tensor  # [N, K] log of the predictive distribution
    unc: dict[str, torch.Tensor]  # UNC_KEYS -> [N]
    member_log_probs: torch.Tensor | None = None  # [N, M, K] for ensembles

    @property
    def probs(self) -> torch.Tensor:
        return self.log_pred.exp()

    @property
    def has_knowledge(self) -> bool:
        """Knowledge uncertainty is defined: a Dirichlet, or an ensemble of at least two members."""
        if self.kind == "ensemble":
            return self.member_log_probs is not None and self.member_log_probs.shape[-2] > 1
        return self.kind != "categorical"


def mean_uncertainty(s: Summary) -> dict[str, float | None]:
    """Mean of each uncertainty measure over the set; ``None`` for undefined knowledge measures."""
    return {k: float(s.unc[k].mean()) if (s.has_knowledge or k not in KNOWLEDGE_KEYS) else None for k in UNC_KEYS}


@torch.no_grad()
def predict(model: nn.Module, ds: ArrayDataset | Any | torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 512,
            num_workers: int = 0, *, desc: str | None = None, progress_mode: str | None = None) -> torch.Tensor:
    """Logits (float32, CPU) of ``model`` in eval mode on all of ``ds`` (unaugmented); a data set's
    batches are decoded by ``num_workers`` DataLoader workers (0: in this process). A progress bar over the
    batches (``desc``) is drawn as :func:`shared.progress.progress_enabled` decides (``progress_mode``:
    auto|on|off, None: the command line's ``--progress``)."""
    model.eval()
    outs = []
    if isinstance(ds, torch.Tensor):
        batches = (ds[i : i + batch_size] for i in range(0, len(ds), batch_size))
    else:
        pin = torch.device(device).type == "cuda"
        batches = (x for x, _ in iterate_batches(ds, batch_size, num_workers, pin_memory=pin))
    n_batches = math.ceil(len(ds) / batch_size)
    for x in progress(batches, desc=desc or "predict", total=n_batches, unit="batch", mode=progress_mode):
        outs.append(model(x.to(device, non_blocking=True)).float().cpu())
    return torch.cat(outs)


def summarize(logits: torch.Tensor, meta: dict[str, Any]) -> Summary:
    """Read raw outputs according to the output convention (see module docstring)."""
    logits = logits.double()
    if logits.dim() == 3:
        lp = torch.log_softmax(logits, -1)
        unc = ensemble_uncertainty(lp)
        log_pred = torch.logsumexp(lp, -2) - math.log(lp.shape[-2])
        return Summary("ensemble", log_pred, {k: unc[k] for k in UNC_KEYS}, lp)
    if meta.get("output") == "dirichlet":
        alphas = alphas_from_logits(logits, offset=float(meta.get("dirichlet_offset", 0.0)))
        unc = dirichlet_uncertainty(alphas)
        log_pred = torch.log(alphas) - torch.log(alphas.sum(-1, keepdim=True))
        return Summary("dirichlet", log_pred, {k: unc[k] for k in UNC_KEYS})
    lp = torch.log_softmax(logits, -1)
    unc = ensemble_uncertainty(lp.unsqueeze(-2))
    return Summary("categorical", lp, {k: unc[k] for k in UNC_KEYS})


def classification_metrics(s: Summary, labels: torch.Tensor) -> dict[str, float]:
    """accuracy, error (%), NLL, ECE (15 bins), Brier of the predictive distribution."""
    p = s.probs.numpy()
    y = labels.numpy()
    acc = accuracy(p, y)
    return {"accuracy": acc, "error": 100.0 * (1.0 - acc), "nll": negative_log_likelihood(p, y),
            "ece": expected_calibration_error(p, y, n_bins=15), "brier": brier_score(p, y)}


def quick_metrics(model: nn.Module, ds: ArrayDataset | Any, meta: dict[str, Any], device: torch.device | str = "cpu",
                  num_workers: int = 0, *, desc: str | None = None, progress_mode: str | None = None) -> dict[str, float]:
    """Classification metrics of ``model`` on ``ds`` (per epoch and at the end of training)."""
    logits = predict(model, ds, device, num_workers=num_workers, desc=desc, progress_mode=progress_mode)
    return classification_metrics(summarize(logits, meta), ds.y)


def rejection_metrics(s: Summary, labels: torch.Tensor) -> dict[str, float | None]:
    """PRR ([EnD2] eq. 16) of misclassification rejection with confidence, entropy and MI (None if undefined)."""
    err = (s.log_pred.argmax(-1) != labels).double().numpy()
    return {"prr_confidence": prediction_rejection_ratio(-s.unc["confidence"].numpy(), err),
            "prr_entropy": prediction_rejection_ratio(s.unc["total"].numpy(), err),
            "prr_mutual_information": (prediction_rejection_ratio(s.unc["mutual_information"].numpy(), err)
                                       if s.has_knowledge else None)}


def ood_metrics(id_s: Summary, ood_s: Summary) -> dict[str, float | None]:
    """ROC-AUC / PR-AUC (OOD positive) with total (entropy) and knowledge (MI, RMI, EPKL) uncertainty;
    the knowledge entries are None when knowledge uncertainty is undefined."""
    out: dict[str, float | None] = {}
    measures = {"total": "total", "confidence": "confidence", "knowledge": "mutual_information", "rmi": "rmi", "epkl": "epkl"}
    for name, key in measures.items():
        if key in KNOWLEDGE_KEYS and not id_s.has_knowledge:
            out[f"{name}_roc_auc"] = out[f"{name}_pr_auc"] = None
            continue
        a, b = id_s.unc[key].numpy(), ood_s.unc[key].numpy()
        if key == "confidence":
            a, b = -a, -b
        sc = ood_detection_scores(a, b)
        out[f"{name}_roc_auc"] = sc["roc_auc"]
        out[f"{name}_pr_auc"] = sc["pr_auc"]
    return out


def uncertainty_gap(s: Summary, teacher: Summary) -> dict[str, float | None]:
    """[Hydra] Table 1: mean |u_model − u_ensemble| for total, data and knowledge uncertainty (None when
    the model has no knowledge uncertainty)."""
    return {f"mad_{k}": (float((s.unc[k] - teacher.unc[k]).abs().mean()) if s.has_knowledge or k not in KNOWLEDGE_KEYS else None)
            for k in ("total", "data", "mutual_information")}


def member_metrics(s: Summary, labels: torch.Tensor) -> dict[str, float]:
    """Mean over members of each member's classification metrics (the "Individual" column)."""
    assert s.member_log_probs is not None
    rows = [classification_metrics(Summary("categorical", s.member_log_probs[:, m], {}), labels) for m in range(s.member_log_probs.shape[1])]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"error_std": float(np.std([r["error"] for r in rows]))}


def evaluate_summaries(val: Summary, val_y: torch.Tensor, test: Summary, test_y: torch.Tensor, oods: dict[str, Summary],
                       teacher: dict[str, Summary] | None = None) -> dict[str, Any]:
    """All metrics as a JSON-able dict."""
    res: dict[str, Any] = {"kind": test.kind, "test": classification_metrics(test, test_y)}
    res["test"].update(calibrated_scores(val.log_pred.numpy(), val_y.numpy(), test.log_pred.numpy(), test_y.numpy(), n_bins=15))
    res["test"].update(rejection_metrics(test, test_y))
    res["test"]["mean_uncertainty"] = mean_uncertainty(test)
    if test.member_log_probs is not None:
        res["members"] = member_metrics(test, test_y)
    res["ood"] = {}
    for name, s in oods.items():
        res["ood"][name] = ood_metrics(test, s)
        res["ood"][name]["mean_uncertainty"] = mean_uncertainty(s)
    if teacher:
        res["vs_teacher"] = {name: uncertainty_gap(s, teacher[name]) for name, s in [("test", test), *oods.items()] if name in teacher}
    return res


# ---------------------------------------------------------------- labelled distribution shift
SHIFT_KEYS = ("accuracy", "error", "nll", "ece", "brier", "calibrated_nll", "calibrated_ece")


def restrict_classes(logits: torch.Tensor, class_index: np.ndarray | None) -> torch.Tensor:
    """Keep only the logits of ``class_index`` (last axis; ImageNet-A/R's 200 wnids); None: unchanged."""
    return logits if class_index is None else logits[..., torch.as_tensor(np.asarray(class_index), dtype=torch.long)]


def shift_metrics(logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any], temperature: float) -> dict[str, float]:
    """accuracy, error, NLL, ECE, Brier and the NLL / ECE of ``softmax(log p̄ / temperature)``
    (:func:`shared.metrics.temperature_scaled_scores` with the in-distribution validation temperature)."""
    s = summarize(logits, meta)
    out = classification_metrics(s, labels)
    out.update(temperature_scaled_scores(s.log_pred.numpy(), labels.numpy(), temperature, n_bins=15))
    return out


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in SHIFT_KEYS}


def evaluate_shift(model: nn.Module, shift: ShiftSet, meta: dict[str, Any], temperature: float, device: torch.device | str = "cpu",
                   batch_size: int = 512, num_workers: int = 0) -> dict[str, Any]:
    """Metrics of ``model`` on every subset of ``shift`` (one subset in memory at a time).

    Returns ``{dataset, n, classes, temperature, mean, subsets}`` and, for corrupted sets,
    ``per_severity`` and ``per_corruption``: unweighted means over the (corruption, severity) subsets,
    the protocol of Hendrycks & Dietterich ([LatentBE] Table 4, [BE] corrupted columns)."""
    rows: dict[str, dict[str, Any]] = {}
    n_classes = int(meta["num_classes"]) if shift.class_index is None else len(shift.class_index)
    for key, ds in shift.subsets.items():
        logits = restrict_classes(predict(model, ds, device, batch_size, num_workers, desc=f"{shift.dataset} {key}"),
                                  shift.class_index)
        rows[key] = {**shift_metrics(logits, ds.y, meta, temperature), "n": len(ds)}
        del logits
    res: dict[str, Any] = {"dataset": shift.dataset, "n": int(sum(r["n"] for r in rows.values())), "classes": n_classes,
                           "temperature": float(temperature), "mean": _mean(list(rows.values()))}
    if shift.corrupted:
        split = [(k.rsplit("/", 1)[0], k.rsplit("/", 1)[1], r) for k, r in rows.items()]
        res["per_severity"] = {s: _mean([r for _, s2, r in split if s2 == s]) for s in sorted({s for _, s, _ in split}, key=int)}
        res["per_corruption"] = {c: _mean([r for c2, _, r in split if c2 == c]) for c in sorted({c for c, _, _ in split})}
        res["subsets"] = rows
    return res
