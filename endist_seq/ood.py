"""Build the permuted-source OOD set ([Proxy] §4.3) from any raw-text test set.

Each source sentence's tokens (whitespace-separated, e.g. after BPE/sentencepiece
encoding or before it) are shuffled into a different order whenever one exists;
the target file is copied unchanged so the pair can be binarised with
``fairseq-preprocess --testpref`` like any test set (its references are
meaningless for BLEU; OOD detection only uses the uncertainty of the outputs).
The shuffle is :func:`endist_seq.toy_corpus.permute_source` with one
``random.Random(seed)`` stream over the file, so the result is a pure function
of the input and the seed.

Command line::

    python -m endist_seq.ood --src test.en --tgt test.de --out-prefix ood/test_permuted [--seed 0]

writes ``ood/test_permuted.en`` and ``ood/test_permuted.de`` (suffixes from the
input names), each atomically (temp file + rename).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from typing import List, Optional, Sequence, Tuple

from shared.io import atomic_write_text
from endist_seq.toy_corpus import Pair, permute_source


def permute_lines(lines: Sequence[str], seed: int = 0) -> List[str]:
    """Token-shuffled copies of ``lines`` (different order whenever the line has two distinct tokens)."""
    rng = random.Random(seed)
    out = []
    for line in lines:
        words = tuple(line.split())
        out.append(" ".join(permute_source(Pair(words, ()), rng).src_words))
    return out


def _read_lines(path: str, flag: str) -> List[str]:
    if not os.path.isfile(path):
        raise ValueError(f"{flag} {path}: no such file")
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()


def _write_atomic(path: str, lines: Sequence[str]) -> None:
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def _suffix(path: str) -> str:
    ext = os.path.splitext(path)[1]
    return ext if ext else ""


def write_permuted_test_set(src: str, tgt: Optional[str], out_prefix: str, seed: int = 0) -> Tuple[str, Optional[str]]:
    """Write ``out_prefix + src suffix`` (permuted source) and ``out_prefix + tgt suffix`` (copied target).

    Raises ``ValueError`` naming the flag for a missing input, line-count mismatch or
    an output that would overwrite an input.
    """
    src_lines = _read_lines(src, "--src")
    tgt_lines = _read_lines(tgt, "--tgt") if tgt else None
    if tgt_lines is not None and len(tgt_lines) != len(src_lines):
        raise ValueError(f"--src {src} has {len(src_lines)} lines but --tgt {tgt} has {len(tgt_lines)}")
    src_out = out_prefix + _suffix(src)
    tgt_out = out_prefix + _suffix(tgt) if tgt else None
    if tgt_out is not None and tgt_out == src_out:
        raise ValueError(f"--src {src} and --tgt {tgt} need different suffixes (e.g. .en and .de)")
    inputs = {os.path.abspath(p) for p in (src, tgt) if p}
    for out in (src_out, tgt_out):
        if out is not None and os.path.abspath(out) in inputs:
            raise ValueError(f"--out-prefix {out_prefix}: output {out} would overwrite an input file")
    _write_atomic(src_out, permute_lines(src_lines, seed))
    if tgt_out is not None and tgt_lines is not None:
        _write_atomic(tgt_out, tgt_lines)
    return src_out, tgt_out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m endist_seq.ood",
        description="Create the permuted-source OOD test set ([Proxy] §4.3) from a raw-text test set.",
    )
    parser.add_argument("--src", required=True, help="source side of the test set (one sentence per line)")
    parser.add_argument("--tgt", help="target side, copied unchanged (optional)")
    parser.add_argument("--out-prefix", required=True, help="output path without language suffix")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        src_out, tgt_out = write_permuted_test_set(args.src, args.tgt, args.out_prefix, args.seed)
    except ValueError as err:
        parser.error(str(err))
    print(f"permuted source written to {src_out}" + (f" (target copied to {tgt_out})" if tgt_out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
