"""Compute the uncertainty of the final hypotheses from each member's distributions at their positions.

Where the distributions come from:

* **the search's own decoder states** (default, plain beam search/sampling with fairseq transformer
  decoders): :class:`~endist_seq.generation.search_record.SearchRecord` kept every member's last hidden
  state at every step; each hypothesis' positions are found by following the beam's parent rows back
  from the row it was finalised from, and one output-layer product per position gives
  P_m(· | y_<l, x) — the distributions the search used (up to float rounding of the output
  projection on a different number of rows);
* **teacher forcing** (``--score-reference``, ``--print-alignment``, other decoders,
  ``--uncertainty-record-mb 0`` or a batch over that bound): the n-best hypotheses of a batch are re-run
  in one batched, non-incremental forward pass per member with decoder input ``</s> y_1 .. y_{L-1}``;
  position l yields P_m(· | y_<l, x). This reproduces the search's distributions up to float rounding
  (the search decodes incrementally), costs one decoder pass over N·L tokens per member and works for
  every fairseq search strategy.

The generation ``--temperature`` T is applied as in fairseq's ``EnsembleModel``
(logits / T) before the softmax or, for a Dirichlet student, before
α = exp(z / T) + offset. For ``kind="proxy"`` the members' tempered
distributions give the Proxy-Dirichlet target β = p̄·β̂₀ + 1
(:func:`shared.dirichlet.proxy_target`, [Proxy] eq. 17), read as a Dirichlet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from endist_seq.generation import measures as M
from endist_seq.generation.search_record import SearchRecord
from shared.dirichlet import proxy_target
from shared.uncertainty import alphas_from_logits

#: upper bound on the elements of one ``[hypotheses, positions, members, vocab]``
#: block of probabilities; larger batches are split into groups of hypotheses.
DEFAULT_MAX_ELEMENTS = 1 << 26


class TokenMeasures(Mapping):
    """The token-level measures of one hypothesis, read-only: name → its values (one per target token,
    ``</s>`` included), ``None`` where undefined; keys in :data:`~endist_seq.generation.measures.TOKEN_MEASURES`
    order.

    A view of positions ``[start, end)`` of its batch's per-measure lists, sliced when read (a new list each time);
    ``dict(view)`` gives a plain dict (e.g. for ``json.dumps``).
    A batch thus keeps one list per measure instead of one per measure and hypothesis: those long-lived lists
    (14 per hypothesis for an ensemble) were most of the objects the scoring left to Python's cyclic garbage
    collector, whose collections cost more than the slicing.
    """

    __slots__ = ("_columns", "_start", "_end")

    def __init__(self, columns: Dict[str, Optional[List[float]]], start: int, end: int) -> None:
        self._columns = columns
        self._start = start
        self._end = end

    def __getitem__(self, name: str) -> Optional[List[float]]:
        column = self._columns[name]
        return None if column is None else column[self._start:self._end]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __repr__(self) -> str:
        return f"TokenMeasures({dict(self.items())!r})"


@dataclass
class HypothesisUncertainty:
    """Uncertainty of one hypothesis (``rank`` in fairseq's n-best order)."""

    rank: int
    tokens: List[int]
    score: float
    log_prob: float  # unnormalised ln P(y|x) = Σ_l ln P(y_l|y<l, x) of the search's model (positional scores)
    sequence: Dict[str, Optional[float]]
    token: Mapping  # name -> Optional[List[float]]: a TokenMeasures view, or any mapping of the same values


@dataclass
class SentenceUncertainty:
    """Uncertainty of the n-best list of one source sentence."""

    kind: str
    num_members: int
    temperature: float
    weighting: str = "logprob"
    hypotheses: List[HypothesisUncertainty] = field(default_factory=list)
    weighted: Dict[str, Optional[float]] = field(default_factory=dict)


class HypothesisScorer:
    """Computes :mod:`~endist_seq.generation.measures` for generated (or reference) hypotheses.

    Args:
        models: the fairseq models of ``--path`` (encoder-decoder).
        kind: ``"ensemble"`` or ``"proxy"`` (M ≥ 2), ``"dirichlet"`` (one student) or ``"single"``.
        pad, eos: target dictionary indices.
        model_offset: Dirichlet offset c in α = exp(z) + c (``kind="dirichlet"`` only).
        temperature: generation temperature applied to the logits.
        nbest_temperature: temperature of the n-best posterior weights.
        nbest_weights: ``"logprob"``, ``"score"`` or ``"uniform"`` (:func:`~endist_seq.generation.measures.nbest_weights`).
        max_elements: memory bound for one block of probabilities (see module constant).
    """

    def __init__(
        self,
        models: Sequence[torch.nn.Module],
        kind: str,
        pad: int,
        eos: int,
        model_offset: float = 0.0,
        temperature: float = 1.0,
        nbest_temperature: float = 1.0,
        nbest_weights: str = "logprob",
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        if kind not in M.MODEL_KINDS:
            raise ValueError(f"model kind must be one of {M.MODEL_KINDS}, got {kind!r}")
        if kind in ("ensemble", "proxy") and len(models) < 2:
            raise ValueError(f"--uncertainty-model {kind} needs at least 2 models, got {len(models)}")
        if kind in ("dirichlet", "single") and len(models) != 1:
            raise ValueError(f"--uncertainty-model {kind} needs exactly one checkpoint in --path, got {len(models)}")
        if not temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {temperature}")
        if not nbest_temperature > 0:
            raise ValueError(f"--nbest-temperature must be > 0, got {nbest_temperature}")
        if nbest_weights not in M.NBEST_WEIGHTS:
            raise ValueError(f"--nbest-weights must be one of {M.NBEST_WEIGHTS}, got {nbest_weights!r}")
        if model_offset < 0:
            raise ValueError(f"--model-offset must be >= 0, got {model_offset}")
        self.models = list(models)
        self.kind = kind
        self.pad = pad
        self.eos = eos
        self.model_offset = float(model_offset)
        self.temperature = float(temperature)
        self.nbest_temperature = float(nbest_temperature)
        self.nbest_weights = nbest_weights
        self.max_elements = int(max_elements)

    # ------------------------------------------------------------------ batching
    def _teacher_forcing_batch(self, hyp_tokens: List[Tensor], device: torch.device):
        """Right-padded decoder inputs ``</s> y_1..y_{L-1}``, targets ``y`` and mask, ``[N, T]``."""
        targets = pad_sequence([t.to(device=device, dtype=torch.long) for t in hyp_tokens], batch_first=True,
                               padding_value=self.pad)
        mask = targets.ne(self.pad)
        prev = torch.full_like(targets, self.pad)
        prev[:, 0] = self.eos
        prev[:, 1:] = torch.where(mask[:, 1:], targets[:, :-1], prev[:, 1:])
        return prev, targets, mask

    def _member_outputs(self, model: torch.nn.Module, encoder_out: Any, prev: Tensor, mask: Tensor) -> Tensor:
        """The member's log-probs (or, for a Dirichlet student, concentrations) at the masked positions, ``[P, K]``,
        by teacher forcing ``prev`` through its decoder."""
        decoder_out = model.decoder(prev, encoder_out=encoder_out)
        # only the masked (non-pad) positions: the temperature and the normalisation act row by row,
        # so selecting first gives the same values and skips the padded rows
        return self._normalised(model, decoder_out[0][mask], decoder_out[1] if len(decoder_out) > 1 else None)

    def _member_outputs_from_states(self, model: torch.nn.Module, states: Tensor) -> Tensor:
        """The same ``[P, K]`` from the search's kept decoder states ``[P, d]`` (:mod:`~endist_seq.generation.search_record`):
        only the decoder's output layer runs."""
        return self._normalised(model, model.decoder.output_layer(states), None)

    def _normalised(self, model: torch.nn.Module, logits: Tensor, extra: Any) -> Tensor:
        """logits ``[P, K]`` / T, then log-softmax (via the model's ``get_normalized_probs``) or α = exp(z) + offset."""
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.kind == "dirichlet":
            return alphas_from_logits(logits, offset=self.model_offset, parametrization=getattr(self, "parametrization", "exp"))
        return model.get_normalized_probs((logits.unsqueeze(0), extra), log_probs=True, sample=None)[0]

    def _groups(self, lengths: List[int], vocab: int) -> List[List[int]]:
        """Split hypothesis indices into groups whose probability block fits ``max_elements``."""
        per_token = vocab * len(self.models)
        groups: List[List[int]] = [[]]
        longest = 0
        for i, length in enumerate(lengths):
            new_longest = max(longest, length)
            if groups[-1] and (len(groups[-1]) + 1) * new_longest * per_token > self.max_elements:
                groups.append([])
                new_longest = length
            groups[-1].append(i)
            longest = new_longest
        return groups

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(
        self,
        net_input: Dict[str, Tensor],
        hypos: List[List[Dict[str, Any]]],
        nbest: int,
        encoder_outs: Optional[List[Any]] = None,
        record: Optional[SearchRecord] = None,
    ) -> List[SentenceUncertainty]:
        """Uncertainty of the top ``nbest`` hypotheses of every sentence of a batch.

        ``hypos[i]`` is fairseq's sorted hypothesis list of the i-th sentence of
        ``net_input``. Each scored hypothesis dict also receives the result under
        ``"uncertainty"`` (a :class:`HypothesisUncertainty`). ``encoder_outs`` (one per
        model, batch order of ``net_input``) are reused when the search already computed
        them; otherwise the encoders are run again. With the search's ``record`` of this batch (decoder
        states of the same models), the distributions come from the kept states (output layer only)
        wherever every hypothesis is found in it; otherwise by teacher forcing.
        """
        selected = [(i, j) for i, sent in enumerate(hypos) for j in range(min(nbest, len(sent)))]
        results = [
            SentenceUncertainty(kind=self.kind, num_members=len(self.models), temperature=self.nbest_temperature,
                                weighting=self.nbest_weights)
            for _ in hypos
        ]
        if not selected:
            return results
        device = net_input["src_tokens"].device
        tokens = [hypos[i][j]["tokens"] for i, j in selected]
        lengths = [int(t.numel()) for t in tokens]
        if min(lengths) < 1:
            raise ValueError("cannot score an empty hypothesis (no tokens, not even </s>)")
        token_lists = [t.tolist() for t in tokens]  # (one tolist() of the concatenation measured 3x slower at 64 hypotheses)
        located = record.locate([i for i, _ in selected], token_lists) if record is not None else None
        if located is None and (encoder_outs is None or len(encoder_outs) != len(self.models)):
            encoder_outs = [m.encoder.forward_torchscript(net_input) for m in self.models]
        vocab = self._vocab_size()
        seq_parts: List[Dict[str, Optional[Tensor]]] = []
        tok_parts: List[M.TokenStats] = []
        group_of: List[List[int]] = self._groups(lengths, vocab)
        batch_size = int(net_input["src_tokens"].shape[0])
        all_scores = [float(hypos[i][j]["score"]) for i, j in selected]
        for group in group_of:
            if located is not None and record is not None:
                flat = torch.tensor([row for g in group for row in located[g]], dtype=torch.long)
                outputs = [
                    self._member_outputs_from_states(m, record.states(k).index_select(0, flat.to(record.states(k).device)))
                    for k, m in enumerate(self.models)
                ]
                chosen = torch.cat([tokens[g] for g in group]).to(device=device, dtype=torch.long)
                group_lengths = torch.tensor([lengths[g] for g in group], device=device)
            else:
                assert encoder_outs is not None
                rows = [selected[g][0] for g in group]
                order = torch.tensor(rows, dtype=torch.long, device=device)
                identity = rows == list(range(batch_size))  # --nbest 1, every sentence: no encoder reordering needed
                prev, targets, mask = self._teacher_forcing_batch([tokens[g] for g in group], device)
                outputs = [
                    self._member_outputs(m, enc if identity else m.encoder.reorder_encoder_out(enc, order), prev, mask)
                    for m, enc in zip(self.models, encoder_outs)
                ]
                chosen = targets[mask]
                group_lengths = mask.sum(1)
            segment = torch.arange(len(group), device=device).repeat_interleave(group_lengths)
            if self.kind == "ensemble":
                stats = M.ensemble_token_stats(torch.stack(outputs, dim=1), chosen, segment, group_lengths)
            elif self.kind == "proxy":
                beta = proxy_target(torch.stack(outputs, dim=1)).beta
                stats = M.dirichlet_token_stats(beta, chosen)
            elif self.kind == "dirichlet":
                stats = M.dirichlet_token_stats(outputs[0], chosen)
            else:
                stats = M.single_token_stats(outputs[0], chosen)
            scores = torch.tensor([all_scores[g] for g in group], dtype=torch.float64)
            seq_parts.append(M.sequence_measures(stats, segment, group_lengths, self.kind, scores.to(device)))
            tok_parts.append(stats)
        self._attach(hypos, results, selected, group_of, seq_parts, tok_parts, lengths, token_lists, all_scores)
        return results

    def _vocab_size(self) -> int:
        decoder = self.models[0].decoder
        if hasattr(decoder, "output_projection") and decoder.output_projection is not None:
            return int(decoder.output_projection.weight.shape[0])
        return len(decoder.dictionary)

    def _attach(
        self,
        hypos: List[List[Dict[str, Any]]],
        results: List[SentenceUncertainty],
        selected: List[tuple],
        groups: List[List[int]],
        seq_parts: List[Dict[str, Optional[Tensor]]],
        tok_parts: List[M.TokenStats],
        lengths: List[int],
        token_lists: List[List[int]],
        scores: List[float],
    ) -> None:
        """Python values of every scored hypothesis: one ``tolist()`` per block (token measures stacked,
        sequence measures stacked, tokens); each hypothesis gets its sequence values and a
        :class:`TokenMeasures` view of its positions."""
        undefined_tok = M.undefined_token_measures(self.kind)
        log_probs = _sequence_log_probs([hypos[i][j] for i, j in selected], lengths)
        for group, seq, stats in zip(groups, seq_parts, tok_parts):
            names = list(seq)
            defined = [k for k in names if seq[k] is not None]
            seq_rows = dict(zip(defined, torch.stack([seq[k] for k in defined]).tolist())) if defined else {}  # type: ignore[misc]
            tok_names = [name for name in M.TOKEN_MEASURES if name not in undefined_tok]
            # float32 measures become float64 exactly (stack promotes), so the Python floats are those of per-measure tolist()
            tok_rows = torch.stack([stats.measures[name] for name in tok_names]).to(torch.float64).tolist() if tok_names else []
            tok_values = dict(zip(tok_names, tok_rows))
            columns = {name: tok_values.get(name) for name in M.TOKEN_MEASURES}  # shared by the group's views
            undefined_column = [None] * len(group)
            # one tuple of sequence values per hypothesis (a transpose in C, not a dict lookup per value)
            seq_by_hypothesis = list(zip(*[seq_rows.get(k, undefined_column) for k in names]))
            end = 0
            for pos, g in enumerate(group):
                i, j = selected[g]
                length = lengths[g]
                start, end = end, end + length
                sequence = dict(zip(names, seq_by_hypothesis[pos]))
                log_prob = log_probs[g]
                if log_prob is None:  # no positional scores: −L·tu_pe
                    tu_pe = sequence.get("tu_pe")
                    log_prob = float("nan") if tu_pe is None else -length * float(tu_pe)
                result = HypothesisUncertainty(
                    rank=j,
                    tokens=token_lists[g],
                    score=scores[g],
                    log_prob=log_prob,
                    sequence=sequence,
                    token=TokenMeasures(columns, start, end),
                )
                hypos[i][j]["uncertainty"] = result
                results[i].hypotheses.append(result)
        for sent in results:
            if not sent.hypotheses:
                continue
            if len(sent.hypotheses) == 1:  # weight 1: the aggregate is the top-1 hypothesis
                sent.weighted = dict(sent.hypotheses[0].sequence)
                continue
            sent.hypotheses.sort(key=lambda h: h.rank)
            weights = M.nbest_weights(
                self.nbest_weights,
                torch.tensor([h.score for h in sent.hypotheses]),
                torch.tensor([h.log_prob for h in sent.hypotheses]),
                self.nbest_temperature,
            ).tolist()
            sent.weighted = {
                name: M.aggregate([h.sequence[name] for h in sent.hypotheses], weights) for name in M.SEQUENCE_MEASURES
            }


def _sequence_log_prob(hypo: Dict[str, Any], sequence: Dict[str, Optional[float]], length: int) -> float:
    """Σ_l ln P(y_l|y<l, x) of the search's model: fairseq's positional scores (natural log), else −L·tu_pe."""
    positional = hypo.get("positional_scores")
    if isinstance(positional, torch.Tensor) and positional.numel() == length:
        return float(positional.to(torch.float64).sum())
    tu_pe = sequence.get("tu_pe")
    return float("nan") if tu_pe is None else -length * float(tu_pe)


def _sequence_log_probs(hypos: List[Dict[str, Any]], lengths: List[int]) -> List[Optional[float]]:
    """:func:`_sequence_log_prob`'s positional-score sums of many hypotheses, one float64 row sum per length
    (a row of a ``[n, L]`` sum is the same float64 sum as the 1-D sum of that row); ``None`` where a hypothesis
    has no positional scores of its length (then −L·tu_pe)."""
    out: List[Optional[float]] = [None] * len(hypos)
    by_length: Dict[int, List[int]] = {}
    for k, (hypo, length) in enumerate(zip(hypos, lengths)):
        positional = hypo.get("positional_scores")
        if isinstance(positional, torch.Tensor) and positional.numel() == length:
            by_length.setdefault(length, []).append(k)
    for length, members in by_length.items():
        rows = torch.stack([hypos[k]["positional_scores"].reshape(length) for k in members])
        for k, value in zip(members, rows.to(torch.float64).sum(dim=1).tolist()):
            out[k] = value
    return out
