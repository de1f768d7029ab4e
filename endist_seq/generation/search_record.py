"""The beam search's own decoder states, kept so that the final hypotheses are scored without decoding them again.

At search step s (0-based) fairseq's ``EnsembleModel.forward_decoder`` receives the live rows'
prefixes ``tokens`` ``[R_s, s + 1]`` (``</s>`` then y_1..y_s) and every member's decoder computes its
last hidden state h_{m,s} ``[R_s, d]``, from which the output layer gives P_m(y_{s+1} | y_≤s, x) =
softmax(W h / T). After the step the search keeps some rows and drops others;
``reorder_incremental_state(new_order)`` tells which row of step s each row of step s + 1 continues
(``new_order[r']`` = its parent row; sentences that finished leave the batch the same way).

:class:`SearchRecord` keeps, per step, the members' h (``[R_s, d]`` each, d ≪ vocabulary), a copy of
``tokens`` and the parent rows. A hypothesis of L tokens (its last one ``</s>``) was finalised at
step L − 1 from a row of its sentence whose prefix is its first L − 1 tokens (found through a polynomial hash
of the prefixes that the record updates step by step, then compared token by token); following the parents back
gives its row at every step, so its L distributions are W h / T of the kept states: one output-layer
product per kept position instead of a teacher-forced pass through every decoder layer
(:class:`~endist_seq.generation.scorer.HypothesisScorer`). The values are the search's own
(incremental) states, not a re-computation, so they equal the teacher-forced ones only up to float
rounding.

Memory: Σ_s R_s · (M·d floats + s + 2 integers: prefix and hash) per batch, bounded by ``max_bytes``; past the
bound the batch is not recorded any further and its hypotheses are re-scored by teacher forcing.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import List, Optional, Sequence

import torch
from torch import Tensor

#: default bound on one batch's record (``--uncertainty-record-mb``)
DEFAULT_RECORD_MB = 1024.0

#: polynomial hash of a prefix y_1..y_s: h = (h·HASH_BASE + y) mod HASH_MODULUS, h = 0 for the empty prefix; every
#: intermediate value stays below 2^52, so int64 tensors and Python ints compute the same numbers (no overflow)
HASH_BASE = 1_000_003
HASH_MODULUS = 2_147_483_647


def prefix_hash(tokens: Sequence[int]) -> int:
    """The prefix hash of :class:`SearchRecord` computed in Python (the record updates it step by step on tensors)."""
    h = 0
    for token in tokens:
        h = (h * HASH_BASE + int(token)) % HASH_MODULUS
    return h


class SearchRecord:
    """Per-step decoder states, prefixes and parent rows of one batch's search (module docstring).

    Args:
        max_bytes: bound on the kept tensors of one batch; 0 keeps nothing.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.start(0)

    def start(self, batch_size: int) -> None:
        """Forget the previous batch; the next step is step 0 of a batch of ``batch_size`` sentences."""
        self.batch_size = int(batch_size)
        self.features: List[List[Tensor]] = []  # [step][member] -> [R_s, d]
        self.tokens: List[Tensor] = []  # [step] -> [R_s, s + 1]
        self.parents: List[Optional[Tensor]] = []  # [step] -> [R_s] row of step s - 1 (None at s = 0)
        self.sentences: List[Tensor] = []  # [step] -> [R_s] sentence of each row (index in the batch)
        self.hashes: List[Tensor] = []  # [step] -> [R_s] prefix_hash of each row's prefix y_1..y_s
        self.pending_order: Optional[Tensor] = None
        self.nbytes = 0
        self.complete = self.max_bytes > 0 and batch_size > 0
        self._stacked: Optional[List[Tensor]] = None

    def _give_up(self) -> None:
        self.complete = False
        self.features, self.tokens, self.parents, self.sentences, self.hashes = [], [], [], [], []
        self._stacked = None

    def reorder(self, new_order: Tensor) -> None:
        """``reorder_incremental_state``: row r' of the next step continues row ``new_order[r']`` of this one."""
        if self.complete:
            self.pending_order = new_order.clone()

    def add_step(self, tokens: Tensor, features: Sequence[Tensor]) -> None:
        """Keep step s: the rows' prefixes ``tokens`` ``[R, s + 1]`` and each member's last states ``[R, d]``."""
        if not self.complete:
            return
        step, rows = len(self.tokens), int(tokens.shape[0])
        if tokens.dim() != 2 or tokens.shape[1] != step + 1 or any(f.shape[0] != rows for f in features):
            self._give_up()  # not fairseq's step-by-step search layout
            return
        if step == 0:
            if rows % self.batch_size:
                self._give_up()
                return
            sentence = torch.arange(self.batch_size, device=tokens.device).repeat_interleave(rows // self.batch_size)
            parent = None
            hashed = torch.zeros(rows, dtype=torch.long, device=tokens.device)  # empty prefix
        else:
            parent, self.pending_order = self.pending_order, None
            if parent is None or parent.numel() != rows:
                self._give_up()
                return
            sentence = self.sentences[-1].index_select(0, parent)
            hashed = torch.add(tokens[:, -1], self.hashes[-1].index_select(0, parent), alpha=HASH_BASE) % HASH_MODULUS
        kept = list(features)  # the search runs without autograd: nothing to detach
        self.nbytes += sum(f.numel() * f.element_size() for f in kept) + (tokens.numel() + rows) * tokens.element_size()
        if self.nbytes > self.max_bytes:
            self._give_up()
            return
        self.features.append(kept)
        self.tokens.append(tokens.clone())  # fairseq rewrites its token buffer in place
        self.parents.append(parent)
        self.sentences.append(sentence)
        self.hashes.append(hashed)

    def locate(self, sentences: Sequence[int], hypotheses: Sequence[Sequence[int]]) -> Optional[List[List[int]]]:
        """Rows of the kept states of each hypothesis' positions, as indices into :meth:`states`.

        ``hypotheses[n]`` (its token ids, ending in ``</s>``) is an output of sentence ``sentences[n]`` of
        this batch. Entry ``[n][l]`` is the row of the stacked states whose output layer gives the
        distribution of its token l. ``None`` when a hypothesis is not among the recorded rows (then it
        must be re-scored). A hypothesis is looked up by binary search of (its sentence, its prefix hash)
        among the rows of its last step, sorted once per step; the prefix of the row found (read for all
        hypotheses of a step in one gather) is then compared token by token, the next rows with the same key
        only after a hash collision, and plain Python follows the parents back (O(N·L) per batch beyond the
        sorts).
        """
        if not self.complete or not self.tokens or not hypotheses:
            return None
        steps = len(self.tokens)
        lengths = [len(h) for h in hypotheses]
        if min(lengths) < 1 or max(lengths) > steps:
            return None
        offsets = [0]
        for step_tokens in self.tokens[:-1]:
            offsets.append(offsets[-1] + int(step_tokens.shape[0]))
        parents = [None if p is None else p.tolist() for p in self.parents[: max(lengths)]]
        tables: dict = {}  # step -> (sorted keys sentence·HASH_MODULUS + prefix hash, their rows), as Python lists
        prefixes = [list(tokens[: length - 1]) for tokens, length in zip(hypotheses, lengths)]
        first: List[int] = []  # per hypothesis: position in its step's sorted keys of the first row with its key
        by_step: dict = {}  # step -> hypotheses finalised at that step
        for n, (sentence, prefix, length) in enumerate(zip(sentences, prefixes, lengths)):
            step = length - 1
            if step not in tables:  # one sort per step in torch instead of a Python loop over its rows
                keys, rows = (self.sentences[step] * HASH_MODULUS + self.hashes[step]).sort(stable=True)
                tables[step] = (keys.tolist(), rows.tolist())
            keys_list = tables[step][0]
            want = int(sentence) * HASH_MODULUS + prefix_hash(prefix)
            at = bisect_left(keys_list, want)
            if at == len(keys_list) or keys_list[at] != want:
                return None
            first.append(at)
            by_step.setdefault(step, []).append(n)
        # the key narrows the rows down; the prefix itself decides (a hash collision is never taken): the prefixes
        # of the first rows with each hypothesis' key, read with one gather per step
        found: List[Optional[int]] = [None] * len(hypotheses)
        for step, members in by_step.items():
            rows_list = tables[step][1]
            candidates = [rows_list[first[n]] for n in members]
            if step == 0:
                read: List[list] = [[] for _ in members]
            else:
                read = self.tokens[step][torch.tensor(candidates, device=self.tokens[step].device), 1:].tolist()
            for n, row, got in zip(members, candidates, read):
                if got == prefixes[n]:
                    found[n] = row
                    continue
                keys_list = tables[step][0]
                at = first[n] + 1  # a collision: the next rows with the same key, one by one
                while at < len(keys_list) and keys_list[at] == keys_list[first[n]]:
                    if self.tokens[step][rows_list[at], 1:].tolist() == prefixes[n]:
                        found[n] = rows_list[at]
                        break
                    at += 1
                if found[n] is None:
                    return None
        located: List[List[int]] = []
        for row, length in zip(found, lengths):
            index = [0] * length
            for s in range(length - 1, -1, -1):
                index[s] = offsets[s] + row
                parent = parents[s]
                if parent is not None:
                    row = parent[row]
            located.append(index)
        return located

    def states(self, member: int) -> Tensor:
        """Every kept state of member ``member``, steps stacked in order: ``[Σ_s R_s, d]``."""
        if self._stacked is None:
            self._stacked = [torch.cat([step[m] for step in self.features]) for m in range(len(self.features[0]))]
        return self._stacked[member]
