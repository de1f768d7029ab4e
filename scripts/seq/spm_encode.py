"""Train a joint sentencepiece model and encode raw parallel text into pieces.

Used by ``prepare_toy_data.sh`` when a vocabulary size is given; works for any
``{split}.{lang}`` raw corpus. Output lines are space-separated pieces, ready
for ``fairseq-preprocess --joined-dictionary``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import sentencepiece as spm


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--model-prefix", required=True, help="writes PREFIX.model and PREFIX.vocab")
    parser.add_argument("--train", nargs="+", required=True, help="raw text files to train on")
    parser.add_argument("--raw-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", required=True)
    parser.add_argument("--langs", nargs="+", required=True)
    args = parser.parse_args(argv)
    if args.vocab_size < 8:
        parser.error(f"--vocab-size must be >= 8, got {args.vocab_size}")
    spm.SentencePieceTrainer.train(
        input=",".join(args.train),
        model_prefix=args.model_prefix,
        vocab_size=args.vocab_size,
        character_coverage=1.0,
        model_type="unigram",
        seed_sentencepiece_size=100000,
        num_threads=1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    proc = spm.SentencePieceProcessor(model_file=f"{args.model_prefix}.model")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split in args.splits:
        for lang in args.langs:
            src = args.raw_dir / f"{split}.{lang}"
            lines = src.read_text(encoding="utf-8").splitlines()
            pieces = proc.encode(lines, out_type=str)
            (args.out_dir / f"{split}.{lang}").write_text(
                "".join(" ".join(p) + "\n" for p in pieces), encoding="utf-8"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
