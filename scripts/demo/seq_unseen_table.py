"""Demo part 30: does knowledge uncertainty predict errors once some inputs are unfamiliar? (issue 14, item 13)

Compares, per model, the in-domain toy test set (``test``: every word seen in training, so the errors are
synonym choices = data uncertainty) with the partly-unseen set (``test3`` = ``test_mixed``: about half the
sentences carry one noun held out of training, labels in ``raw/test_mixed.unseen``). Per set and measure:

* PRR (%) for sentence errors 100 − sentence-BLEU ([EnD2] App. B; :func:`endist_seq.seq_eval.evaluate_model`);
* ROC-AUC (%) for detecting wrong sentences (top-1 ≠ reference);
* ROC-AUC (%) for detecting token errors (Levenshtein, :mod:`endist_seq.token_errors`);
* on ``test_mixed`` only: ROC-AUC (%) for detecting the sentences with a held-out noun (labels).

Usage::

    python scripts/demo/seq_unseen_table.py --labels raw/test_mixed.unseen --out report.md \\
        --model ensemble ens/test/generate-test.txt ens/test3/generate-test3.txt [--model ...]

Writes ``--out`` (markdown, also printed) and the same numbers as JSON beside it (``.json``), atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from endist_seq.generation.parse import GenerateOutputError, GeneratedSentence, read_generate_output
from endist_seq.seq_eval import ModelOutputs, bleu_scores, evaluate_model, measure_values
from shared.io import atomic_write_text

#: (column label, measure): total uncertainty (EoE) for reference, then the knowledge-uncertainty measures
MEASURES = (("EoE", "pe_total"), ("MI pe", "pe_mutual_information"), ("MI ep", "ep_mutual_information"),
            ("RMI", "pe_rmi"), ("EPKL ep", "ep_epkl"), ("ku_ep", "ku_ep"))


def _roc(negatives: np.ndarray, positives: np.ndarray) -> Optional[float]:
    """ROC-AUC of positives vs negatives on ranks (ties averaged); None without both classes."""
    from scipy.stats import rankdata

    from shared.metrics import ood_detection_scores

    if negatives.size == 0 or positives.size == 0:
        return None
    ranks = rankdata(np.concatenate([negatives, positives]))
    return float(ood_detection_scores(ranks[: negatives.size], ranks[negatives.size :])["roc_auc"])


def evaluate_set(name: str, path: str, sentences: List[GeneratedSentence],
                 unseen: Optional[np.ndarray] = None) -> Dict[str, object]:
    """PRR, wrong-sentence ROC-AUC, token-error ROC-AUC (and held-out detection ROC-AUC if ``unseen``)."""
    result = evaluate_model(ModelOutputs(name, path, sentences, []))
    hyps, refs = [s.top1 or "" for s in sentences], [s.reference or "" for s in sentences]
    wrong = np.array([h.split() != r.split() for h, r in zip(hyps, refs)])
    _, _, sent_bleu = bleu_scores(hyps, refs)
    values = measure_values(sentences)
    seq_roc = {m: None if values.get(m) is None else _roc(values[m][~wrong], values[m][wrong]) for _, m in MEASURES}
    out: Dict[str, object] = {
        "file": path, "sentences": len(sentences), "bleu": result["bleu"], "wrong_sentences": float(wrong.mean()),
        "prr": {m: result["prr"].get(m) for _, m in MEASURES},  # type: ignore[union-attr]
        "wrong_sentence_roc_auc": seq_roc,
        "token_errors": result["token_errors"],
        "mean_sentence_bleu": float(sent_bleu.mean()),
    }
    if unseen is not None:
        out["unseen_sentences"] = int(unseen.sum())
        out["wrong_sentences_unseen"] = float(wrong[unseen].mean())
        out["wrong_sentences_seen"] = float(wrong[~unseen].mean())
        out["held_out_detection_roc_auc"] = {
            m: None if values.get(m) is None else _roc(values[m][~unseen], values[m][unseen]) for _, m in MEASURES}
    return out


def _pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def render(results: Dict[str, Dict[str, Dict[str, object]]]) -> str:
    labels = [label for label, _ in MEASURES]
    head = "| model | set | " + " | ".join(labels) + " |\n|---|---|" + "---:|" * len(labels)
    lines = ["## Knowledge uncertainty vs errors: synonym-only test set vs partly-unseen test_mixed", "",
             "Measures: " + ", ".join(f"{label} = `{m}`" for label, m in MEASURES) + ". All numbers in %.", "",
             "| model | set | sentences | BLEU | wrong sentences | wrong: seen / held-out sentences |",
             "|---|---|---:|---:|---:|---:|"]
    for model, sets in results.items():
        for set_name, r in sets.items():
            split = (f"{_pct(r['wrong_sentences_seen'])} / {_pct(r['wrong_sentences_unseen'])}"  # type: ignore[arg-type]
                     if "wrong_sentences_unseen" in r else "–")
            lines.append(f"| {model} | {set_name} | {r['sentences']} | {r['bleu']:.1f} | "
                         f"{_pct(r['wrong_sentences'])} | {split} |")  # type: ignore[arg-type]
    sections = [("PRR (sentence error 100 − sentence-BLEU)", "prr"),
                ("ROC-AUC for wrong sentences (top-1 ≠ reference)", "wrong_sentence_roc_auc"),
                ("ROC-AUC for token errors (Levenshtein)", "token"),
                ("ROC-AUC for the sentences with a held-out noun (test_mixed labels)", "held_out_detection_roc_auc")]
    for title, key in sections:
        lines += ["", f"### {title}", "", head]
        for model, sets in results.items():
            for set_name, r in sets.items():
                if key == "token":
                    te = r["token_errors"]
                    # token measures carry the same names as the sequence ones (averaged per token)
                    row = [None if te is None else te["roc_auc"].get(m) for _, m in MEASURES]  # type: ignore[index]
                elif key in r:
                    row = [r[key].get(m) for _, m in MEASURES]  # type: ignore[union-attr]
                else:
                    continue
                lines.append(f"| {model} | {set_name} | " + " | ".join(_pct(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seq_unseen_table.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", required=True, type=Path, help="test_mixed.unseen (one 0/1 per sentence)")
    parser.add_argument("--out", required=True, type=Path, help="markdown report (JSON beside it)")
    parser.add_argument("--model", nargs=3, action="append", required=True, metavar=("NAME", "TEST", "MIXED"),
                        help="model name, its generate output on test and on test_mixed (test3)")
    args = parser.parse_args(argv)
    try:
        labels = np.array([line.strip() == "1" for line in args.labels.read_text().splitlines()])
    except OSError as err:
        parser.error(f"--labels {args.labels}: cannot read ({err.strerror})")
    results: Dict[str, Dict[str, Dict[str, object]]] = {}
    for name, test_path, mixed_path in args.model:
        try:
            test = read_generate_output(test_path, require_references=True)
            mixed = read_generate_output(mixed_path, require_references=True)
        except GenerateOutputError as err:
            parser.error(f"--model {name}: {err}")
        if sorted(s.id for s in mixed) != list(range(len(labels))):
            parser.error(f"--model {name}: {mixed_path} has {len(mixed)} sentences, --labels {args.labels} "
                         f"has {len(labels)} labels (expected sentence ids 0..{len(labels) - 1})")
        unseen = labels[[s.id for s in mixed]]
        results[name] = {"test (synonyms only)": evaluate_set(name, test_path, test),
                         "test_mixed (held-out nouns)": evaluate_set(name, mixed_path, mixed, unseen)}
    text = render(results)
    atomic_write_text(args.out, text)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
