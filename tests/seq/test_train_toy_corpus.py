"""The toy corpus: deterministic, learnable structure, genuine ambiguity, OOD variants, binarised as a user would."""

import json
from collections import defaultdict

from endist_seq import toy_corpus


def test_generation_is_deterministic_and_seeded():
    a = toy_corpus.generate(seed=3, n_train=50, n_valid=5, n_test=5)
    b = toy_corpus.generate(seed=3, n_train=50, n_valid=5, n_test=5)
    c = toy_corpus.generate(seed=4, n_train=50, n_valid=5, n_test=5)
    assert a == b
    assert a["train"] != c["train"]
    assert a["train"][:5] != a["valid"]  # separate random streams per split


def test_cli_files_match_generator(toy_raw):
    manifest = json.loads((toy_raw / "manifest.json").read_text())
    splits = toy_corpus.generate(seed=manifest["seed"])
    for split in ("train", "valid", "test", "test_permuted", "test_unseen"):
        src = (toy_raw / f"{split}.en").read_text().splitlines()
        tgt = (toy_raw / f"{split}.de").read_text().splitlines()
        assert src == [p.src for p in splits[split]]
        assert tgt == [p.tgt for p in splits[split]]
        assert manifest["sizes"][split] == len(src)


def test_translation_structure_and_ambiguity(toy_raw):
    src = (toy_raw / "train.en").read_text().splitlines()
    tgt = (toy_raw / "train.de").read_text().splitlines()
    translations = defaultdict(set)
    for s, t in zip(src, tgt):
        s_words, t_words = s.split(), t.split()
        assert len(s_words) == len(t_words)
        verb = next(w for w in s_words if w in toy_corpus.VERBS)
        translations[verb].add(t_words[-1] if t_words[-1] in toy_corpus.VERBS[verb][0] else t_words[-2])
        # SVO -> SOV: the verb's translation comes after both noun phrases
        assert t_words.index(next(w for w in t_words if w in translations[verb])) >= len(t_words) - 2
    # every verb is genuinely ambiguous in the data: both synonyms occur
    assert all(len(translations[v]) == 2 for v in toy_corpus.VERBS), dict(translations)


def test_ood_variants(toy_raw):
    test = (toy_raw / "test.en").read_text().splitlines()
    permuted = (toy_raw / "test_permuted.en").read_text().splitlines()
    unseen = (toy_raw / "test_unseen.en").read_text().splitlines()
    train_vocab = {w for line in (toy_raw / "train.en").read_text().splitlines() for w in line.split()}
    assert len(test) == len(permuted) == len(unseen)
    changed = 0
    for orig, perm in zip(test, permuted):
        assert sorted(orig.split()) == sorted(perm.split())
        changed += orig != perm
    assert changed >= 0.95 * len(test)
    unseen_vocab = {w for line in unseen for w in line.split()}
    assert not unseen_vocab & train_vocab
    for name in ("test_permuted", "test_unseen"):
        assert (toy_raw / f"{name}.de").read_text() == (toy_raw / "test.de").read_text()


def test_binarised_data(toy_data_bin):
    subsets = dict(line.split() for line in (toy_data_bin / "subsets.txt").read_text().splitlines())
    assert subsets == {"test": "test", "test1": "test_permuted", "test2": "test_unseen", "test3": "test_mixed"}
    for split in ("train", "valid", "test", "test1", "test2"):
        for lang in ("en", "de"):
            assert (toy_data_bin / f"{split}.en-de.{lang}.bin").stat().st_size > 0
    en_dict = (toy_data_bin / "dict.en.txt").read_text().split()
    assert "cat" in en_dict and "chat" not in en_dict  # the unseen vocabulary maps to <unk>
