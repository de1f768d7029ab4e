"""Deterministic synthetic parallel corpus ("toy En→De") for tests and the demo.

A tiny Transformer learns it in about a minute on CPU, yet it has the three
properties the uncertainty experiments of [Proxy] §4.3 need:

* **Structure to learn.** Source sentences follow ``NP VERB NP [ADV]`` with
  ``NP = [ADJ] NOUN`` (SVO, adjective before the noun). The target reorders to
  ``NP' NP' VERB' [ADV']`` with ``NP' = NOUN' [ADJ']`` (SOV, adjective after the
  noun), so the model has to attend, not just copy token by token.
* **Genuine data uncertainty.** Every verb and a few nouns have two target
  synonyms drawn at random per sentence (with fixed probabilities, e.g. 50/50
  or 80/20). No model can predict which synonym the reference uses, so an
  ensemble shows *data* (aleatoric) uncertainty at those positions, while it
  agrees elsewhere.
* **OOD variants.** ``test_permuted`` shuffles the tokens of each test source
  sentence (the "permuted tokens" OOD set of [Proxy] §4.3); ``test_unseen``
  writes the same sentences with a source vocabulary never seen in training
  (pseudo-French, like the "French source" OOD set). Their ``.de`` files hold
  the references of the unperturbed sentences.
* **Partly unseen inputs** (issue 14, item 13). ``test_mixed`` is an in-domain-like
  test set of which about half the sentences contain one noun held out of training
  on both sides (:data:`HELD_OUT_NOUNS`, e.g. ``horse`` → ``pferd``); the other half
  uses only training words, so its errors are synonym choices (data uncertainty)
  while the held-out half's errors come from missing knowledge (knowledge
  uncertainty). ``test_mixed.unseen`` holds one label per line: ``1`` for a
  sentence with a held-out noun, ``0`` otherwise.

Everything is a pure function of ``seed``: the same seed gives byte-identical
files. Command line::

    python -m endist_seq.toy_corpus OUTDIR [--seed 1] [--train 3000] ...

writes ``{train,valid,test,test_permuted,test_unseen,test_mixed}.{en,de}``,
``test_mixed.unseen`` and ``manifest.json``; then binarise with ``scripts/seq/prepare_toy_data.sh``
(``fairseq-preprocess``, optionally through sentencepiece) exactly as with real
data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from shared.io import atomic_write_text

SRC_LANG = "en"
TGT_LANG = "de"
SPLITS = ("train", "valid", "test")
OOD_SPLITS = ("test_permuted", "test_unseen")
#: the partly-unseen test set (issue 14, item 13) and the suffix of its label file
MIXED_SPLIT = "test_mixed"
UNSEEN_LABELS_SUFFIX = "unseen"
#: fraction of ``test_mixed`` sentences drawn with one held-out noun
MIXED_UNSEEN_FRACTION = 0.5

# source word -> (target synonyms, their probabilities)
NOUNS: Dict[str, Tuple[Tuple[str, ...], Tuple[float, ...]]] = {
    "cat": (("katze",), (1.0,)),
    "dog": (("hund",), (1.0,)),
    "bird": (("vogel",), (1.0,)),
    "fish": (("fisch",), (1.0,)),
    "tree": (("baum",), (1.0,)),
    "house": (("haus",), (1.0,)),
    "car": (("auto", "wagen"), (0.5, 0.5)),
    "boat": (("boot", "schiff"), (0.7, 0.3)),
    "king": (("koenig",), (1.0,)),
    "queen": (("koenigin",), (1.0,)),
    "child": (("kind", "knirps"), (0.8, 0.2)),
    "river": (("fluss",), (1.0,)),
    "stone": (("stein",), (1.0,)),
    "star": (("stern",), (1.0,)),
    "moon": (("mond",), (1.0,)),
    "book": (("buch",), (1.0,)),
}
VERBS: Dict[str, Tuple[Tuple[str, ...], Tuple[float, ...]]] = {
    "sees": (("sieht", "erblickt"), (0.5, 0.5)),
    "likes": (("mag", "liebt"), (0.5, 0.5)),
    "takes": (("nimmt", "greift"), (0.8, 0.2)),
    "finds": (("findet", "entdeckt"), (0.6, 0.4)),
    "eats": (("isst", "frisst"), (0.5, 0.5)),
    "builds": (("baut", "errichtet"), (0.7, 0.3)),
    "paints": (("malt", "zeichnet"), (0.5, 0.5)),
    "follows": (("folgt", "verfolgt"), (0.9, 0.1)),
}
ADJECTIVES: Dict[str, str] = {
    "big": "gross",
    "small": "klein",
    "red": "rot",
    "green": "gruen",
    "old": "alt",
    "young": "jung",
}
ADVERBS: Dict[str, str] = {"today": "heute", "again": "wieder", "quickly": "schnell", "slowly": "langsam"}

# Nouns held out of every training sentence (source and target side); only ``test_mixed`` uses them.
HELD_OUT_NOUNS: Dict[str, Tuple[Tuple[str, ...], Tuple[float, ...]]] = {
    "horse": (("pferd",), (1.0,)),
    "apple": (("apfel",), (1.0,)),
    "flower": (("blume",), (1.0,)),
    "lamp": (("lampe",), (1.0,)),
}

# The unseen-vocabulary OOD source: same sentences, pseudo-French words that never occur in training.
UNSEEN: Dict[str, str] = {
    "cat": "chat", "dog": "chien", "bird": "oiseau", "fish": "poisson", "tree": "arbre",
    "house": "maison", "car": "voiture", "boat": "bateau", "king": "roi", "queen": "reine",
    "child": "enfant", "river": "riviere", "stone": "pierre", "star": "etoile", "moon": "lune",
    "book": "livre", "sees": "voit", "likes": "aime", "takes": "prend", "finds": "trouve",
    "eats": "mange", "builds": "construit", "paints": "peint", "follows": "suit", "big": "grand",
    "small": "petit", "red": "rouge", "green": "vert", "old": "vieux", "young": "jeune",
    "today": "aujourdhui", "again": "encore", "quickly": "vite", "slowly": "lentement",
}


@dataclass(frozen=True)
class Pair:
    """One sentence pair; ``src_words`` keeps the source tokens for the OOD variants."""

    src_words: Tuple[str, ...]
    tgt_words: Tuple[str, ...]

    @property
    def src(self) -> str:
        return " ".join(self.src_words)

    @property
    def tgt(self) -> str:
        return " ".join(self.tgt_words)


def _pick(rng: random.Random, options: Tuple[Tuple[str, ...], Tuple[float, ...]]) -> str:
    words, probs = options
    return rng.choices(words, weights=probs, k=1)[0]


def _noun_phrase(
    rng: random.Random, nouns: Dict[str, Tuple[Tuple[str, ...], Tuple[float, ...]]] = NOUNS
) -> Tuple[List[str], List[str]]:
    noun = rng.choice(sorted(nouns))
    src, tgt = [noun], [_pick(rng, nouns[noun])]
    if rng.random() < 0.4:
        adj = rng.choice(sorted(ADJECTIVES))
        src.insert(0, adj)  # English: adjective before the noun
        tgt.append(ADJECTIVES[adj])  # toy German: adjective after the noun
    return src, tgt


def sample_pair(rng: random.Random, held_out_slot: Optional[int] = None) -> Pair:
    """Draw one SVO source sentence and its SOV translation (synonyms drawn at random).

    ``held_out_slot`` 0 (subject) or 1 (object) draws that noun from :data:`HELD_OUT_NOUNS`
    instead of :data:`NOUNS`; ``None`` (the training distribution) consumes the random
    stream exactly as before the option existed.
    """
    if held_out_slot not in (None, 0, 1):
        raise ValueError(f"held_out_slot must be None, 0 or 1, got {held_out_slot!r}")
    subj_s, subj_t = _noun_phrase(rng, HELD_OUT_NOUNS if held_out_slot == 0 else NOUNS)
    verb = rng.choice(sorted(VERBS))
    obj_s, obj_t = _noun_phrase(rng, HELD_OUT_NOUNS if held_out_slot == 1 else NOUNS)
    src = subj_s + [verb] + obj_s
    tgt = subj_t + obj_t + [_pick(rng, VERBS[verb])]
    if rng.random() < 0.3:
        adv = rng.choice(sorted(ADVERBS))
        src.append(adv)
        tgt.append(ADVERBS[adv])
    return Pair(tuple(src), tuple(tgt))


def permute_source(pair: Pair, rng: random.Random) -> Pair:
    """OOD: shuffle the source tokens (a different order whenever one exists)."""
    words = list(pair.src_words)
    if len(set(words)) > 1:
        while tuple(words) == pair.src_words:
            rng.shuffle(words)
    return Pair(tuple(words), pair.tgt_words)


def unseen_source(pair: Pair) -> Pair:
    """OOD: the same sentence written with a source vocabulary never seen in training."""
    return Pair(tuple(UNSEEN[w] for w in pair.src_words), pair.tgt_words)


def mixed_test_set(seed: int, n: int) -> Tuple[List[Pair], List[bool]]:
    """``test_mixed``: ``n`` pairs and, per pair, whether it contains a held-out noun.

    Each sentence independently has one held-out noun (subject or object, equally likely)
    with probability :data:`MIXED_UNSEEN_FRACTION`; its own random stream, so the other
    splits are unchanged.
    """
    rng = random.Random(seed * 1000 + 98)
    pairs: List[Pair] = []
    unseen: List[bool] = []
    for _ in range(n):
        held_out = rng.random() < MIXED_UNSEEN_FRACTION
        pairs.append(sample_pair(rng, rng.randrange(2) if held_out else None))
        unseen.append(held_out)
    return pairs, unseen


def generate(seed: int = 1, n_train: int = 3000, n_valid: int = 200, n_test: int = 200) -> Dict[str, List[Pair]]:
    """All splits as lists of pairs; a pure function of its arguments.

    Test sentences whose source also occurs in train are allowed (the corpus is
    small), but valid/test are drawn from a separate random stream.
    """
    for name, n in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        if n < 1:
            raise ValueError(f"{name} must be >= 1, got {n}")
    splits: Dict[str, List[Pair]] = {}
    for offset, (split, n) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test))):
        rng = random.Random(seed * 1000 + offset)
        splits[split] = [sample_pair(rng) for _ in range(n)]
    perm_rng = random.Random(seed * 1000 + 99)
    splits["test_permuted"] = [permute_source(p, perm_rng) for p in splits["test"]]
    splits["test_unseen"] = [unseen_source(p) for p in splits["test"]]
    splits[MIXED_SPLIT] = mixed_test_set(seed, n_test)[0]
    return splits




def write_corpus(outdir: Path, splits: Dict[str, Sequence[Pair]], seed: int) -> Dict[str, object]:
    """Write ``{split}.{en,de}`` (one sentence per line), ``test_mixed.unseen`` and ``manifest.json``; each atomically.

    The labels of ``test_mixed`` (``1`` = the sentence has a held-out noun) are read off its
    source words, so they describe exactly the sentences written.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        atomic_write_text(outdir / f"{split}.{SRC_LANG}", "".join(p.src + "\n" for p in pairs))
        atomic_write_text(outdir / f"{split}.{TGT_LANG}", "".join(p.tgt + "\n" for p in pairs))
    if MIXED_SPLIT in splits:
        labels = "".join(f"{int(any(w in HELD_OUT_NOUNS for w in p.src_words))}\n" for p in splits[MIXED_SPLIT])
        atomic_write_text(outdir / f"{MIXED_SPLIT}.{UNSEEN_LABELS_SUFFIX}", labels)
    manifest: Dict[str, object] = {
        "seed": seed,
        "source_lang": SRC_LANG,
        "target_lang": TGT_LANG,
        "sizes": {split: len(pairs) for split, pairs in splits.items()},
        "ood": {
            "test_permuted": "test source tokens randomly permuted; references of the original sentences",
            "test_unseen": "test sentences with an unseen (pseudo-French) source vocabulary",
        },
        "mixed": {
            MIXED_SPLIT: "in-domain sentences, about half with one noun held out of training (source and target); "
            f"labels in {MIXED_SPLIT}.{UNSEEN_LABELS_SUFFIX} (1 = has a held-out noun)",
        },
        "held_out_source_words": sorted(HELD_OUT_NOUNS),
        "ambiguous_source_words": sorted(w for w, (t, _) in {**NOUNS, **VERBS}.items() if len(t) > 1),
    }
    atomic_write_text(outdir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m endist_seq.toy_corpus",
        description="Write the deterministic toy En->De corpus (raw text) with OOD test variants.",
    )
    parser.add_argument("outdir", type=Path, help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train", type=int, default=3000, help="training pairs (default 3000)")
    parser.add_argument("--valid", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    args = parser.parse_args(argv)
    if args.outdir.exists() and not args.outdir.is_dir():
        parser.error(f"outdir {args.outdir} exists and is not a directory")
    try:
        splits = generate(args.seed, args.train, args.valid, args.test)
    except ValueError as err:
        parser.error(str(err).replace("n_", "--", 1))
    write_corpus(args.outdir, splits, args.seed)
    print(f"toy corpus written to {args.outdir}: " + ", ".join(f"{k}={len(v)}" for k, v in splits.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
