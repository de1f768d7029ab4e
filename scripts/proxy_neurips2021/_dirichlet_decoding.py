"""Dirichlet student (EnD2) searched two ways (issue 14, item 4): softmax(z) (the default) vs the expected
categorical p̂ = α/α₀ (`--dirichlet-mean-decoding`), on the same test set with the same beam.

Per mode: corpus BLEU (sacrebleu, `endist_seq.seq_eval.bleu_scores`), the mean and max over sentences of
|score + tu_pe| of the top-1 hypothesis (nats per token; score = (1/L^lenpen) Σ ln q(yₗ) of the search
distribution q, tu_pe = −(1/L) Σ ln p̂(yₗ), so the gap is 0 up to float rounding when q = p̂ and --lenpen 1),
and how many top-1 hypotheses the two modes share. Writes OUT (markdown, also printed) atomically.

    python _dirichlet_decoding.py --softmax end2/generate-test.txt --mean end2_mean/generate-test.txt --out OUT
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Sequence

import numpy as np

from endist_seq.generation.parse import GenerateOutputError, GeneratedSentence, read_generate_output
from endist_seq.seq_eval import bleu_scores
from shared.io import atomic_write_text


def score_gap(sentences: Sequence[GeneratedSentence]) -> np.ndarray:
    """|score + tu_pe| of each sentence's top-1 hypothesis (nats per token)."""
    return np.array([abs(s.measures[0]["score"] + s.measures[0]["tu_pe"]) for s in sentences])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="_dirichlet_decoding.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--softmax", required=True, help="generate output of the default (softmax) search")
    parser.add_argument("--mean", required=True, help="generate output with --dirichlet-mean-decoding")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    runs: List[List[GeneratedSentence]] = []
    for flag, path in (("--softmax", args.softmax), ("--mean", args.mean)):
        try:
            runs.append(sorted(read_generate_output(path, require_references=True), key=lambda s: s.id))
        except GenerateOutputError as err:
            parser.error(f"{flag}: {err}")
    if [s.id for s in runs[0]] != [s.id for s in runs[1]]:
        parser.error(f"--softmax {args.softmax} and --mean {args.mean} hold different sentences")
    lines = ["| EnD2 search | sentences | BLEU | mean / max of abs(score + tu_pe) (nats/token) |", "|---|---:|---:|---:|"]
    for label, sents in (("softmax(z) (default)", runs[0]), ("α/α₀ (--dirichlet-mean-decoding)", runs[1])):
        bleu, _, _ = bleu_scores([s.top1 or "" for s in sents], [s.reference or "" for s in sents])
        gap = score_gap(sents)
        lines.append(f"| {label} | {len(sents)} | {bleu:.2f} | {gap.mean():.3g} / {gap.max():.3g} |")
    same = sum(a.top1 == b.top1 for a, b in zip(*runs))
    lines += ["", f"identical top-1 hypotheses: {same} / {len(runs[0])}"]
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
