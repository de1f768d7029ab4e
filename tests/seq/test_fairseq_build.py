"""fairseq-fixed's compiled extensions load against the installed torch and numpy (issue 17.4).

On Python 3.12 the registry offers a prebuilt fairseq-fixed 0.12.3.1 wheel whose C++ extensions were compiled against
another torch: ``import fairseq.libbase`` then fails with an undefined ``c10`` symbol. The Makefile therefore builds
fairseq-fixed from source (``--no-binary fairseq-fixed``) against the torch it has just installed, on every Python.
"""

from __future__ import annotations

import importlib

import pytest
import torch

#: fairseq's compiled modules: C++ torch extensions (libbase: BASE layers, libnat: Levenshtein edits),
#: plain C++ (libbleu) and Cython against numpy (the two *_fast modules of fairseq.data)
EXTENSIONS = ["fairseq.libbase", "fairseq.libnat", "fairseq.libbleu",
              "fairseq.data.data_utils_fast", "fairseq.data.token_block_utils_fast"]


@pytest.mark.parametrize("name", EXTENSIONS)
def test_fairseq_extension_loads(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__.endswith(".so"), module.__file__


def test_libbase_balanced_assignment_runs() -> None:
    """The torch extension runs, not only loads: BASE layers' balanced token-to-expert assignment (6 tokens, 3 experts,
    2 tokens each) gives every token the expert it clearly prefers when those preferences are already balanced."""
    from fairseq import libbase

    preferred = torch.tensor([2, 0, 1, 0, 2, 1])
    g = torch.Generator().manual_seed(0)
    scores = 10.0 * torch.nn.functional.one_hot(preferred, 3).float() + 0.01 * torch.randn(6, 3, generator=g)
    order = libbase.balanced_assignment(scores)  # token indices sorted by expert, 2 per expert
    assert sorted(order.tolist()) == list(range(6))
    chunks = [set(order[2 * e: 2 * e + 2].tolist()) for e in range(3)]
    assert chunks == [{1, 3}, {2, 5}, {0, 4}]
