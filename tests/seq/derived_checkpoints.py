"""Hostile or mismatched variants of a real teacher checkpoint, for the checkpoint-safety tests.

Each helper loads a real fairseq checkpoint weights-only, changes its stored
configuration the way an attacker or a careless user would, and saves the copy.
"""

import os
from pathlib import Path

import torch

import endist_seq  # noqa: F401  (allow-lists fairseq's config objects for weights-only loading)


def _set(section, key: str, value) -> None:
    """Set a field of a config section stored as a dict or as an ``argparse.Namespace``."""
    if isinstance(section, dict):
        section[key] = value
    else:
        setattr(section, key, value)


def unsafe_cutoff_checkpoint(src: Path, dst: Path, marker: Path) -> Path:
    """``src`` whose ``cfg.model.adaptive_softmax_cutoff`` would create ``marker`` if fairseq eval()ed it."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    _set(state["cfg"]["model"], "adaptive_softmax_cutoff", f"(__import__('os').system('touch {marker}'), [8])[1]")
    torch.save(state, dst)
    return dst


def reordered_dictionary_checkpoint(src: Path, data_bin: Path, dst: Path) -> Path:
    """``src`` as if trained on a copy of ``data_bin`` whose source dictionary has two symbols swapped.

    Same sizes, so the embedding tables still fit; the copy's directory holds the
    dictionaries and an (empty) index file named like fairseq's binarised data, from
    which fairseq infers the language pair; ``task.source_lang/target_lang`` stay
    ``None`` as in the toy pipeline's checkpoints.
    """
    data = dst.parent / f"{dst.stem}_data"
    data.mkdir(parents=True, exist_ok=True)
    src_lines = (data_bin / "dict.en.txt").read_text().splitlines(keepends=True)
    src_lines[0], src_lines[1] = src_lines[1], src_lines[0]
    (data / "dict.en.txt").write_text("".join(src_lines))
    (data / "dict.de.txt").write_text((data_bin / "dict.de.txt").read_text())
    (data / "train.en-de.en.idx").touch()
    state = torch.load(src, map_location="cpu", weights_only=True)
    assert state["cfg"]["task"]["source_lang"] is None, "the toy teachers leave the languages to inference"
    state["cfg"]["task"]["data"] = os.fspath(data)
    torch.save(state, dst)
    return dst
