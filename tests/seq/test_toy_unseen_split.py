"""The toy corpus' partly-unseen test set ``test_mixed`` (issue 14, item 13): no training needed.

The labels in ``test_mixed.unseen`` are checked against the *written training text* (not against the
generator's word lists): a sentence is labelled 1 exactly when its source has a word that no training
source sentence has, and then its reference also has a word no training target has. The binarised
``test3`` subset (``scripts/seq/prepare_toy_data.sh``) maps exactly those words to ``<unk>`` (that one test
reuses the seq suite's shared toy data-bin fixture, which the other seq tests build anyway).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import List, Set

from endist_seq import toy_corpus


def _lines(path: Path) -> List[str]:
    return path.read_text().splitlines()


def _vocab(path: Path) -> Set[str]:
    return {w for line in _lines(path) for w in line.split()}


def _write(tmp_path: Path, *args: str) -> Path:
    raw = tmp_path / "raw"
    assert toy_corpus.main([str(raw), *args]) == 0
    return raw


def test_mixed_labels_match_training_vocabulary(tmp_path: Path) -> None:
    raw = _write(tmp_path, "--seed", "2")
    src, tgt = _lines(raw / "test_mixed.en"), _lines(raw / "test_mixed.de")
    labels = _lines(raw / "test_mixed.unseen")
    assert len(src) == len(tgt) == len(labels) == 200
    assert set(labels) == {"0", "1"}
    train_src, train_tgt = _vocab(raw / "train.en"), _vocab(raw / "train.de")
    for s, t, label in zip(src, tgt, labels):
        new_src = [w for w in s.split() if w not in train_src]
        new_tgt = [w for w in t.split() if w not in train_tgt]
        if label == "1":
            assert len(new_src) == 1 and len(new_tgt) == 1, (s, t)  # one held-out noun, on both sides
        else:
            assert not new_src and not new_tgt, (s, t)
    # the generator's own flags (drawn before each sentence) agree with the labels read off the written words
    assert [label == "1" for label in labels] == toy_corpus.mixed_test_set(2, 200)[1]
    unseen = labels.count("1") / len(labels)
    assert 0.35 <= unseen <= 0.65  # "partly": both halves are large enough to compare
    # the held-out half is otherwise in-domain: its remaining words are training words
    assert all(len(s.split()) >= 3 for s in src)


def test_mixed_split_leaves_the_other_splits_unchanged(tmp_path: Path) -> None:
    splits = toy_corpus.generate(seed=5, n_train=40, n_valid=5, n_test=30)

    for offset, split in enumerate(("train", "valid", "test")):
        rng = random.Random(5 * 1000 + offset)  # the documented stream of each split
        redrawn = [toy_corpus.sample_pair(rng) for _ in splits[split]]
        assert redrawn == splits[split]
    held_out = set(toy_corpus.HELD_OUT_NOUNS)
    assert not any(held_out & set(p.src_words) for split in ("train", "valid", "test") for p in splits[split])
    assert len(splits["test_mixed"]) == 30


def test_binarised_mixed_set_has_unk_exactly_in_unseen_sentences(toy_raw: Path, toy_data_bin: Path) -> None:
    """``test3`` of the seq suite's shared data-bin (``toy_pipeline.sh``; built once per run for all seq tests)."""
    subsets = dict(line.split() for line in _lines(toy_data_bin / "subsets.txt"))
    assert subsets["test3"] == "test_mixed"

    from fairseq.data import Dictionary, data_utils

    labels = _lines(toy_raw / "test_mixed.unseen")
    for lang in ("en", "de"):
        dictionary = Dictionary.load(str(toy_data_bin / f"dict.{lang}.txt"))
        dataset = data_utils.load_indexed_dataset(str(toy_data_bin / f"test3.en-de.{lang}"), dictionary)
        sentences = _lines(toy_raw / f"test_mixed.{lang}")
        assert len(dataset) == len(labels) == len(sentences)
        for i, (label, sentence) in enumerate(zip(labels, sentences)):
            ids = dataset[i].tolist()
            assert len(ids) == len(sentence.split()) + 1  # + </s>
            assert ids.count(dictionary.unk()) == int(label), (lang, sentence)
