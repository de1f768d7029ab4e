"""MT uncertainty evaluation: BLEU, sequence-level PRR and OOD detection ([Proxy] Tables 3–4).

For one model, given its generate outputs on an in-domain test set (with
references) and on OOD sets:

* **BLEU** — sacrebleu corpus BLEU of the top-1 hypotheses, with sacrebleu's signature;
* **PRR** per measure ([EnD2] App. B): per-sentence error e_i = 100 − sentence-BLEU_i
  (sacrebleu, effective order) of the top-1 hypothesis; sentences are rejected in
  order of decreasing uncertainty u_i and a rejected sentence counts as perfect
  (error 0); PRR = AR_uns / AR_orc from :func:`shared.metrics.prediction_rejection_ratio`;
* **OOD detection** per measure and OOD set: ROC-AUC, PR-AUC (OOD = positive) and
  FPR at 95% TPR from :func:`shared.metrics.ood_detection_scores`;
* **token-level error detection** per token measure (both chain rules): ROC-AUC and PR-AUC
  for tokens of the top-1 hypothesis that the Levenshtein alignment to the reference does
  not match (:mod:`endist_seq.token_errors`).

The uncertainty u of a measure is its value, except for the confidences
``score``, ``pe_confidence`` and ``ep_confidence`` where u = −value
(:data:`endist_seq.generation.measures.CONFIDENCE_MEASURES`). Measures a model
cannot provide (``undefined``) are reported as ``None`` (``-`` in tables).
Values enter the metrics through their ranks (average ranks for ties), which
leaves PRR, ROC-AUC and PR-AUC unchanged and handles ±inf.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from endist_seq.generation.measure_names import CONFIDENCE_MEASURES, SEQUENCE_MEASURES
from endist_seq.generation.parse import GeneratedSentence
from endist_seq.token_errors import token_error_detection
from shared.progress import progress

#: default headline columns, as in [Proxy] Tables 3–4: total (entropy of the expected
#: distribution) and knowledge (reverse mutual information) uncertainty
DEFAULT_HEADLINE: Tuple[Tuple[str, str], ...] = (("EoE", "pe_total"), ("RMI", "pe_rmi"))
AGGREGATES = ("top1", "weighted")


@dataclass
class OODSet:
    name: str
    path: str
    sentences: List[GeneratedSentence]


@dataclass
class ModelOutputs:
    name: str
    id_path: str
    id_sentences: List[GeneratedSentence]
    ood: List[OODSet]


def measure_values(sentences: Sequence[GeneratedSentence], aggregate: str = "top1") -> Dict[str, Optional[np.ndarray]]:
    """Uncertainty per measure (``None`` if undefined for any sentence), oriented so higher = more uncertain."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    rows: List[Mapping[str, Optional[float]]] = []
    for sent in sentences:
        if aggregate == "top1":
            rows.append(sent.measures[0])
        else:
            if sent.weighted is None:
                raise ValueError(f"sentence {sent.id} has no UW- (n-best weighted) line; use --aggregate top1")
            rows.append(sent.weighted)
    names = [n for n in SEQUENCE_MEASURES if n in rows[0]] + sorted(n for n in rows[0] if n not in SEQUENCE_MEASURES)
    out: Dict[str, Optional[np.ndarray]] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if any(v is None for v in values):
            out[name] = None
            continue
        arr = np.asarray(values, dtype=np.float64)
        out[name] = -arr if name in CONFIDENCE_MEASURES else arr
    return out


def bleu_scores(hypotheses: Sequence[str], references: Sequence[str]) -> Tuple[float, str, np.ndarray]:
    """Corpus BLEU, its sacrebleu signature and per-sentence BLEU (effective order; a progress bar over the
    sentences on a terminal, :mod:`shared.progress`)."""
    from sacrebleu.metrics import BLEU

    corpus = BLEU()
    result = corpus.corpus_score(list(hypotheses), [list(references)])
    sentence = BLEU(effective_order=True)
    pairs = progress(zip(hypotheses, references), desc="sentence BLEU", total=len(hypotheses), unit="sent")
    per_sentence = np.array([sentence.sentence_score(h, [r]).score for h, r in pairs])
    return float(result.score), str(corpus.get_signature()), per_sentence


def evaluate_model(model: ModelOutputs, aggregate: str = "top1") -> Dict[str, object]:
    """BLEU, PRR per measure and OOD scores per set and measure (JSON-serialisable)."""
    from scipy.stats import rankdata  # lazy (≈ 0.5 s): parsing and --help need no scipy

    from shared.metrics import ood_detection_scores, prediction_rejection_ratio

    sents = model.id_sentences
    hyps = [s.top1 or "" for s in sents]
    refs = [s.reference or "" for s in sents]
    bleu, signature, sent_bleu = bleu_scores(hyps, refs)
    errors = 100.0 - sent_bleu
    id_values = measure_values(sents, aggregate)
    prr: Dict[str, Optional[float]] = {}
    for name, u in id_values.items():
        prr[name] = None if u is None else _finite_or_none(prediction_rejection_ratio(rankdata(u), errors))
    token_errors = token_error_detection(
        [s.tokenised or "" for s in sents], [s.reference or "" for s in sents], [s.token_measures for s in sents]
    )
    ood: Dict[str, object] = {}
    for ood_set in model.ood:
        ood_values = measure_values(ood_set.sentences, aggregate)
        per: Dict[str, Dict[str, Optional[float]]] = {"roc_auc": {}, "pr_auc": {}, "fpr_at_95_tpr": {}}
        for name, u in id_values.items():
            v = ood_values.get(name)
            if u is None or v is None:
                for key in per:
                    per[key][name] = None
                continue
            ranks = rankdata(np.concatenate([u, v]))
            scores = ood_detection_scores(ranks[: u.size], ranks[u.size :])
            for key in per:
                per[key][name] = float(scores[key])
        ood[ood_set.name] = {"file": ood_set.path, "sentences": len(ood_set.sentences), **per}
    return {
        "id_file": model.id_path,
        "sentences": len(sents),
        "bleu": bleu,
        "bleu_signature": signature,
        "mean_sentence_error": float(errors.mean()),
        "prr": prr,
        "ood": ood,
        "token_errors": token_errors,
    }


def _finite_or_none(x: float) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


def _cell(value: Optional[float], scale: float = 100.0) -> str:
    return "-" if value is None else f"{scale * value:.1f}"


def render_markdown(
    results: Mapping[str, Mapping[str, object]],
    headline: Sequence[Tuple[str, str]] = DEFAULT_HEADLINE,
    aggregate: str = "top1",
    title: str = "Sequence-level uncertainty",
) -> str:
    """Markdown report: [Proxy] Table 3 (BLEU, PRR) and Table 4 (OOD ROC-AUC) layouts, then all measures."""
    models = list(results)
    ood_names: List[str] = []
    for res in results.values():
        for name in res["ood"]:  # type: ignore[union-attr]
            if name not in ood_names:
                ood_names.append(name)
    measures: List[str] = []
    for res in results.values():
        for name in res["prr"]:  # type: ignore[union-attr]
            if name not in measures:
                measures.append(name)
    lines = [f"# {title}", ""]
    lines.append(
        f"Measures of the {'top-1 hypothesis' if aggregate == 'top1' else 'n-best posterior-weighted aggregate'}; "
        "PRR, ROC-AUC and PR-AUC in %; `-` = undefined for that model. "
        "Headline columns: " + ", ".join(f"{label} = `{m}`" for label, m in headline) + "."
    )
    lines += ["", "## Prediction quality ([Proxy] Table 3 layout)", ""]
    header = ["Model", "BLEU"] + [f"PRR {label}" for label, _ in headline]
    lines += [_row(header), _row(["---"] * len(header))]
    for model in models:
        res = results[model]
        prr = res["prr"]  # type: ignore[index]
        lines.append(_row([model, f"{res['bleu']:.1f}"] + [_cell(prr.get(m)) for _, m in headline]))  # type: ignore[union-attr]
    if ood_names:
        lines += ["", "## OOD detection, ROC-AUC ([Proxy] Table 4 layout)", ""]
        header = ["Model"] + [f"{o} {label}" for o in ood_names for label, _ in headline]
        lines += [_row(header), _row(["---"] * len(header))]
        for model in models:
            ood = results[model]["ood"]  # type: ignore[index]
            cells = [model]
            for o in ood_names:
                for _, m in headline:
                    cells.append(_cell(ood[o]["roc_auc"].get(m)) if o in ood else "-")  # type: ignore[index, union-attr]
            lines.append(_row(cells))
    lines += ["", "## All measures: PRR", ""]
    header = ["Model"] + measures
    lines += [_row(header), _row(["---"] * len(header))]
    for model in models:
        prr = results[model]["prr"]  # type: ignore[index]
        lines.append(_row([model] + [_cell(prr.get(m)) for m in measures]))  # type: ignore[union-attr]
    for metric, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
        for o in ood_names:
            lines += ["", f"## All measures: {label}, {o}", ""]
            lines += [_row(header), _row(["---"] * len(header))]
            for model in models:
                ood = results[model]["ood"]  # type: ignore[index]
                if o not in ood:  # type: ignore[operator]
                    continue
                lines.append(_row([model] + [_cell(ood[o][metric].get(m)) for m in measures]))  # type: ignore[index]
    lines += ["", "## Token-level error detection (Levenshtein errors of the top-1 hypothesis = positive)", ""]
    token_measures: List[str] = []
    for res in results.values():
        te = res.get("token_errors")  # type: ignore[union-attr]
        for name in (te or {}).get("roc_auc", {}):  # type: ignore[union-attr]
            if name not in token_measures:
                token_measures.append(name)
    if not token_measures:
        lines.append("No UT- token values in the inputs (or none matching the tokens): not evaluated.")
    else:
        header = ["Model", "tokens", "error %"] + [f"{m} ROC / PR" for m in token_measures]
        lines += [_row(header), _row(["---"] * len(header))]
        for model in models:
            te = results[model].get("token_errors")  # type: ignore[union-attr]
            if not te:
                lines.append(_row([model, "-", "-"] + ["-"] * len(token_measures)))
                continue
            cells = [model, str(te["tokens"]), f"{100 * te['error_rate']:.1f}"]  # type: ignore[index]
            for m in token_measures:
                roc, pr = te["roc_auc"].get(m), te["pr_auc"].get(m)  # type: ignore[index, union-attr]
                cells.append(f"{_cell(roc)} / {_cell(pr)}")
            lines.append(_row(cells))
    lines += ["", "BLEU signatures:", ""]
    for model in models:
        lines.append(f"- {model}: `{results[model]['bleu_signature']}`")
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def safe_name(name: str) -> str:
    """File-name-safe version of a model or measure name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def write_plots(
    model: ModelOutputs,
    out_dir: str,
    measures: Sequence[str],
    aggregate: str = "top1",
) -> List[str]:
    """Rejection curves (one PNG, all defined ``measures``) and one ID-vs-OOD histogram per measure."""
    import os

    from shared.plots import plot_rejection_curves, plot_uncertainty_histograms

    sents = model.id_sentences
    _, _, sent_bleu = bleu_scores([s.top1 or "" for s in sents], [s.reference or "" for s in sents])
    id_values = measure_values(sents, aggregate)
    defined = {m: id_values[m] for m in measures if id_values.get(m) is not None}
    written: List[str] = []
    if not defined:
        return written
    stem = os.path.join(out_dir, safe_name(model.name))
    written.append(
        plot_rejection_curves(
            100.0 - sent_bleu, defined, f"{stem}_rejection.png",  # type: ignore[arg-type]
            title=f"{model.name}: rejection curves", error_label="100 - sentence BLEU",
        )
    )
    if model.ood:
        ood_values = {o.name: measure_values(o.sentences, aggregate) for o in model.ood}
        for name, u in defined.items():
            others = {o: vals[name] for o, vals in ood_values.items() if vals.get(name) is not None}
            written.append(
                plot_uncertainty_histograms(
                    u, others, f"{stem}_{safe_name(name)}_hist.png", measure=name,  # type: ignore[arg-type]
                    title=f"{model.name}: {name}, in-domain vs OOD",
                )
            )
    return written
