"""Token-level error detection (issue 14, item 12): Levenshtein labels and ROC/PR-AUC per token measure.

A hypothesis token is an **error** when the minimum-edit-distance (Levenshtein) alignment of
the tokenised hypothesis to the tokenised reference does not *match* it, i.e. it is
substituted or inserted. Both sequences end with ``</s>`` (the ``UT-`` lines hold one value
per target token, ``</s>`` included), which is aligned like any other token.

Alignment: the standard dynamic programme D[i][j] = min(D[i−1][j] + 1 (hypothesis token i
inserted), D[i][j−1] + 1 (reference token j deleted), D[i−1][j−1] + [h_i ≠ r_j]); the
backtrace from (|h|, |r|) prefers a match, then a substitution, then an insertion, then a
deletion, so among the optimal alignments the one with the most matched hypothesis tokens
is taken along that path.

Detection: errors are the positive class and the uncertainty of a token is the value of a
measure (negated for ``*_confidence`` and ``*_log_prob``, where higher = more confident);
ROC-AUC and PR-AUC (average precision) come from :func:`shared.metrics.ood_detection_scores`
(correct tokens as "in-domain", errors as "OOD"), computed on ranks (ties: average rank) so
that ±inf values are ranked, not rejected.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

EOS = "</s>"


def levenshtein_error_labels(hypothesis: Sequence[str], reference: Sequence[str]) -> List[bool]:
    """``labels[i]`` is True when hypothesis token i is not matched by the Levenshtein alignment to ``reference``."""
    n, m = len(hypothesis), len(reference)
    dist = np.zeros((n + 1, m + 1), dtype=np.int64)
    dist[:, 0] = np.arange(n + 1)
    dist[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            dist[i, j] = min(
                dist[i - 1, j] + 1,
                dist[i, j - 1] + 1,
                dist[i - 1, j - 1] + (hypothesis[i - 1] != reference[j - 1]),
            )
    labels = [True] * n
    i, j = n, m
    while i > 0:
        if j > 0 and hypothesis[i - 1] == reference[j - 1] and dist[i, j] == dist[i - 1, j - 1]:
            labels[i - 1] = False  # match
            i, j = i - 1, j - 1
        elif j > 0 and dist[i, j] == dist[i - 1, j - 1] + 1:
            i, j = i - 1, j - 1  # substitution: an error
        elif dist[i, j] == dist[i - 1, j] + 1:
            i -= 1  # insertion: an error
        else:
            j -= 1  # deletion of a reference token
    return labels


def oriented(name: str, values: np.ndarray) -> np.ndarray:
    """Uncertainty from a token measure: −value for ``*_confidence`` and ``*_log_prob``."""
    return -values if name.endswith(("_confidence", "_log_prob")) else values


def token_error_detection(
    hypotheses: Sequence[str],
    references: Sequence[str],
    token_measures: Sequence[Optional[Dict[str, Optional[List[float]]]]],
) -> Optional[Dict[str, object]]:
    """ROC-AUC and PR-AUC of every token-level measure for detecting Levenshtein errors.

    Args:
        hypotheses: tokenised top-1 hypotheses (whitespace-separated, without ``</s>``).
        references: tokenised references.
        token_measures: the top-1 hypothesis' ``UT-`` values per measure (``None``: none printed).

    Returns:
        ``None`` when no sentence has token measures that fit its tokens; else a dict with
        ``tokens``, ``errors``, ``error_rate``, ``sentences`` (used), ``sentences_skipped``
        (no ``UT-`` values, or a count that differs from the whitespace tokens + ``</s>``, e.g.
        BPE removed in the ``H-`` line), ``roc_auc`` and ``pr_auc`` {measure: value or None}.
    """
    labels: List[bool] = []
    values: Dict[str, List[float]] = {}
    undefined: set = set()
    used = skipped = 0
    for hyp, ref, measures in zip(hypotheses, references, token_measures):
        hyp_tokens = hyp.split() + [EOS]
        if not measures or any(v is not None and len(v) != len(hyp_tokens) for v in measures.values()):
            skipped += 1
            continue
        used += 1
        labels.extend(levenshtein_error_labels(hyp_tokens, ref.split() + [EOS]))
        for name, vals in measures.items():
            if vals is None:
                undefined.add(name)
            else:
                values.setdefault(name, []).extend(vals)
    if not used:
        return None
    y = np.asarray(labels, dtype=bool)
    roc: Dict[str, Optional[float]] = {}
    pr: Dict[str, Optional[float]] = {}
    names = list(values) + sorted(undefined - set(values))
    for name in names:
        if name in undefined or y.all() or not y.any():
            roc[name] = pr[name] = None
            continue
        from scipy.stats import rankdata  # lazy (≈ 0.5 s): parsing and --help need no scipy

        from shared.metrics import ood_detection_scores

        ranks = rankdata(oriented(name, np.asarray(values[name], dtype=np.float64)))
        scores = ood_detection_scores(ranks[~y], ranks[y])
        roc[name], pr[name] = scores["roc_auc"], scores["pr_auc"]
    return {
        "tokens": int(y.size),
        "errors": int(y.sum()),
        "error_rate": float(y.mean()),
        "sentences": used,
        "sentences_skipped": skipped,
        "roc_auc": roc,
        "pr_auc": pr,
    }
