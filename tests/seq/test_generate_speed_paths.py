"""Fast paths of the ``--compute-uncertainty`` re-scoring (issue 16): same values as the plain computation.

* :func:`~endist_seq.generation.scorer._sequence_log_probs` (one row sum per length) equals the per-hypothesis
  float64 sum :func:`~endist_seq.generation.scorer._sequence_log_prob` bit for bit;
* ``_member_outputs`` normalises only the non-pad positions: equal to normalising the whole padded block first;
* :meth:`HypothesisScorer.score` (batched teacher forcing, encoder reuse without reordering for ``--nbest 1``,
  stacked ``tolist``) against an unbatched float64 recomputation of each hypothesis from the chain-rule formulas
  (Malinin & Gales 2021, §3), for ``--nbest 1`` (one group, identity order) and ``--nbest 2`` (reordered encoder outputs) in one group or split into groups.
"""

import argparse
import math
from typing import Any, Dict, List

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerModel, base_architecture

from endist_seq.generation.scorer import HypothesisScorer, _sequence_log_prob, _sequence_log_probs


class _Task:
    def __init__(self, dictionary: Dictionary) -> None:
        self.source_dictionary = dictionary
        self.target_dictionary = dictionary


def _models(seeds=(0, 1)) -> tuple:
    dictionary = Dictionary()
    for i in range(20):
        dictionary.add_symbol(f"w{i}")
    args = argparse.Namespace(
        encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_layers=1, encoder_attention_heads=2,
        decoder_embed_dim=16, decoder_ffn_embed_dim=32, decoder_layers=2, decoder_attention_heads=2,
        dropout=0.0, max_source_positions=64, max_target_positions=64,
    )
    base_architecture(args)
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(TransformerModel.build_model(args, _Task(dictionary)).eval())
    return dictionary, models


def _batch(dictionary: Dictionary, nbest: int, seed: int = 3) -> tuple:
    """Left-padded sources and ``nbest`` random hypotheses (ending in </s>) per sentence, fairseq's dict layout."""
    gen = torch.Generator().manual_seed(seed)
    pad, eos, first = dictionary.pad(), dictionary.eos(), dictionary.nspecial
    src_lengths = [5, 3, 7, 4]
    width = max(src_lengths)
    src = torch.full((len(src_lengths), width), pad, dtype=torch.long)
    for i, n in enumerate(src_lengths):
        src[i, width - n:] = torch.cat([torch.randint(first, len(dictionary), (n - 1,), generator=gen), torch.tensor([eos])])
    hypos: List[List[Dict[str, Any]]] = []
    for i in range(len(src_lengths)):
        sent = []
        for r in range(nbest):
            length = int(torch.randint(1, 8, (1,), generator=gen))
            tokens = torch.cat([torch.randint(first, len(dictionary), (length - 1,), generator=gen), torch.tensor([eos])])
            positional = -torch.rand(length, generator=gen) * 3
            sent.append({"tokens": tokens, "score": float(-r - torch.rand(1, generator=gen)), "positional_scores": positional})
        hypos.append(sent)
    net_input = {"src_tokens": src, "src_lengths": torch.tensor(src_lengths)}
    return net_input, hypos


def test_grouped_log_prob_sums_are_bitwise_the_per_hypothesis_sums() -> None:
    gen = torch.Generator().manual_seed(0)
    hypos, lengths = [], []
    for length in list(range(1, 70)) * 2:
        dtype = torch.float32 if length % 3 else torch.float64
        hypos.append({"positional_scores": (torch.randn(length, generator=gen) * 4).to(dtype)})
        lengths.append(length)
    hypos += [{}, {"positional_scores": torch.zeros(3)}]  # missing; wrong length → fall back to −L·tu_pe
    lengths += [4, 5]
    fast = _sequence_log_probs(hypos, lengths)
    for hypo, length, value in zip(hypos, lengths, fast):
        if "positional_scores" in hypo and hypo["positional_scores"].numel() == length:
            assert value == _sequence_log_prob(hypo, {}, length)  # exact, not approximate
        else:
            assert value is None


def test_normalising_only_the_kept_positions_equals_normalising_the_padded_block() -> None:
    dictionary, models = _models()
    net_input, hypos = _batch(dictionary, nbest=1)
    scorer = HypothesisScorer(models, "ensemble", pad=dictionary.pad(), eos=dictionary.eos(), temperature=0.7)
    prev, _, mask = scorer._teacher_forcing_batch([h[0]["tokens"] for h in hypos], torch.device("cpu"))
    assert not bool(mask.all())  # the batch has padded positions
    with torch.no_grad():
        for model in models:
            encoder_out = model.encoder.forward_torchscript(net_input)
            out = model.decoder(prev, encoder_out=encoder_out)
            whole = model.get_normalized_probs((out[0] / 0.7, out[1]), log_probs=True, sample=None)[mask]
            assert torch.equal(scorer._member_outputs(model, encoder_out, prev, mask), whole)


def _reference(models: List[torch.nn.Module], src: torch.Tensor, tokens: torch.Tensor, eos: int, pad: int) -> Dict[str, Any]:
    """One hypothesis alone (no padding anywhere), measures from float64 formulas."""
    src = src[src.ne(pad)].unsqueeze(0)
    prev = torch.cat([torch.tensor([eos]), tokens[:-1]]).unsqueeze(0)
    member = []
    with torch.no_grad():
        for model in models:
            enc = model.encoder(src, src_lengths=torch.tensor([src.shape[1]]))
            member.append(torch.log_softmax(model.decoder(prev, encoder_out=enc)[0][0].double(), dim=-1))
    lp = torch.stack(member)  # [M, L, K]
    m, length = lp.shape[0], lp.shape[1]
    chosen = lp[:, torch.arange(length), tokens]  # [M, L]
    mean = lp.exp().mean(0)
    prefix = torch.cat([torch.zeros(m, 1, dtype=torch.float64), chosen.cumsum(1)[:, :-1]], dim=1)  # ln P_m(y<l)
    w = torch.softmax(prefix, dim=0)  # [M, L]
    ep = (w.unsqueeze(-1) * lp.exp()).sum(0)
    entropy = lambda p: -(p * p.log()).sum(-1)  # noqa: E731
    pe_log_prob = mean[torch.arange(length), tokens].log()
    return {
        "pe_log_prob": pe_log_prob.tolist(),
        "pe_total": entropy(mean).tolist(),
        "ep_log_prob": ep[torch.arange(length), tokens].log().tolist(),
        "ep_total": entropy(ep).tolist(),
        "tu_pe": float(-pe_log_prob.mean()),
        "tu_ep": float(-(torch.logsumexp(chosen.sum(1), 0) - math.log(m)) / length),
        "member_nll": float(-chosen.sum(1).mean() / length),
    }


@pytest.mark.parametrize("nbest,max_elements", [(1, 1 << 26), (2, 1 << 26), (2, 400)])
def test_score_matches_unbatched_float64_formulas(nbest: int, max_elements: int) -> None:
    dictionary, models = _models()
    net_input, hypos = _batch(dictionary, nbest=nbest)
    scorer = HypothesisScorer(models, "ensemble", pad=dictionary.pad(), eos=dictionary.eos(), max_elements=max_elements)
    lengths = [int(h["tokens"].numel()) for sent in hypos for h in sent]
    groups = scorer._groups(lengths, len(dictionary) * 1)
    assert (len(groups) == 1) == (max_elements > 400)  # 400: several groups; nbest 2: reordered encoder outputs
    results = scorer.score(net_input, hypos, nbest)
    for i, sent in enumerate(results):
        assert [h.rank for h in sent.hypotheses] == list(range(nbest))
        for hyp in sent.hypotheses:
            source = hypos[i][hyp.rank]
            assert hyp.tokens == source["tokens"].tolist()
            assert hyp.score == source["score"]
            assert hyp.log_prob == float(source["positional_scores"].to(torch.float64).sum())
            ref = _reference(models, net_input["src_tokens"][i], source["tokens"], dictionary.eos(), dictionary.pad())
            for name in ("pe_log_prob", "pe_total", "ep_log_prob", "ep_total"):
                assert hyp.token[name] == pytest.approx(ref[name], rel=1e-5, abs=1e-5), name
            for name in ("tu_pe", "tu_ep", "member_nll"):
                assert hyp.sequence[name] == pytest.approx(ref[name], rel=1e-5, abs=1e-5), name
        if nbest == 1:
            assert sent.weighted == sent.hypotheses[0].sequence


def _search(models: List[torch.nn.Module], dictionary: Dictionary, net_input: Dict[str, Any], record_bytes: int,
            sampling: bool = False) -> tuple:
    """fairseq's SequenceGenerator over ``models`` given as plain ``EnsembleModel`` (record_bytes 0) or as
    ``RecordingEnsembleModel``; returns (hypotheses, the ensemble model)."""
    from fairseq import search
    from fairseq.sequence_generator import EnsembleModel, SequenceGenerator

    from endist_seq.generation.sequence_generator import RecordingEnsembleModel

    ensemble = RecordingEnsembleModel(models, record_bytes=record_bytes) if record_bytes else EnsembleModel(models)
    strategy = search.Sampling(dictionary, sampling_topk=8) if sampling else None
    generator = SequenceGenerator(ensemble, dictionary, beam_size=3, max_len_b=9, search_strategy=strategy)
    torch.manual_seed(11)  # the sampling search draws from torch's global generator
    with torch.no_grad():
        return generator.generate(models, {"net_input": net_input}), ensemble


@pytest.mark.parametrize("kind,members,sampling", [("ensemble", 2, False), ("ensemble", 2, True), ("proxy", 2, False),
                                                    ("single", 1, False), ("dirichlet", 1, False)])
def test_scoring_from_the_search_record_equals_teacher_forcing(kind: str, members: int, sampling: bool) -> None:
    """The hypotheses' distributions taken from the search's own decoder states (issue 16) equal the teacher-forced
    ones to float rounding (those are checked against the float64 formulas above), for every model kind and for
    sampling; the search itself is unchanged bit for bit."""
    dictionary, models = _models(seeds=(0, 1)[:members])
    for model in models:  # </s> close to a frequent word: hypotheses end at various steps (random weights rarely end)
        weight = model.decoder.output_projection.weight.data
        weight[dictionary.eos()] = 1.05 * weight[10]
    net_input, _ = _batch(dictionary, nbest=1)
    plain, _ = _search(models, dictionary, net_input, record_bytes=0, sampling=sampling)
    hypos, ensemble = _search(models, dictionary, net_input, record_bytes=1 << 30, sampling=sampling)
    for a, b in zip(plain, hypos):
        assert len(a) == len(b) == 3
        for x, y in zip(a, b):
            assert torch.equal(x["tokens"], y["tokens"]) and torch.equal(x["positional_scores"], y["positional_scores"])
            assert x["score"] == y["score"]
    lengths = {int(h["tokens"].numel()) for sent in hypos for h in sent}
    assert len(lengths) > 1  # hypotheses end at different steps: the backtracking crosses finished rows
    record = ensemble.record
    assert record is not None and record.complete
    assert len({int(t.shape[0]) for t in record.tokens}) > 1  # sentences finished early and left the batch
    selected = [(i, j) for i in range(len(hypos)) for j in range(3)]
    assert record.locate([i for i, _ in selected], [hypos[i][j]["tokens"].tolist() for i, j in selected]) is not None
    scorer = HypothesisScorer(models, kind, pad=dictionary.pad(), eos=dictionary.eos(), temperature=0.8,
                              model_offset=1.0 if kind == "dirichlet" else 0.0)
    from_states = scorer.score(net_input, hypos, 3, encoder_outs=ensemble.last_encoder_outs, record=record)
    forced = scorer.score(net_input, hypos, 3)
    for sent_a, sent_b in zip(from_states, forced):
        for ha, hb in zip(sent_a.hypotheses, sent_b.hypotheses):
            assert ha.tokens == hb.tokens
            for name, values in hb.token.items():
                if values is not None:
                    assert ha.token[name] == pytest.approx(values, rel=1e-4, abs=1e-5), name
            for name, value in hb.sequence.items():
                if value is not None:
                    assert ha.sequence[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


def test_search_record_over_its_budget_falls_back_to_teacher_forcing() -> None:
    dictionary, models = _models()
    net_input, _ = _batch(dictionary, nbest=1)
    hypos, ensemble = _search(models, dictionary, net_input, record_bytes=2000)  # a few steps' states at most
    assert ensemble.record is not None and not ensemble.record.complete
    scorer = HypothesisScorer(models, "ensemble", pad=dictionary.pad(), eos=dictionary.eos())
    assert ensemble.record.locate([0], [hypos[0][0]["tokens"].tolist()]) is None
    _assert_teacher_forced(scorer, net_input, hypos, ensemble.record)


def _assert_teacher_forced(scorer: HypothesisScorer, net_input: Dict[str, Any], hypos: List[List[Dict[str, Any]]],
                           record: Any) -> None:
    """``score`` with this record must take the teacher-forced path (never the kept states) and give its values."""
    calls = {"states": 0, "forced": 0}
    from_states, forced_outputs = scorer._member_outputs_from_states, scorer._member_outputs

    def count(name: str, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    scorer._member_outputs_from_states = count("states", from_states)  # type: ignore[method-assign]
    scorer._member_outputs = count("forced", forced_outputs)  # type: ignore[method-assign]
    results = scorer.score(net_input, hypos, 1, record=record)
    assert calls["states"] == 0 and calls["forced"] == len(scorer.models)
    del scorer._member_outputs_from_states, scorer._member_outputs
    plain = scorer.score(net_input, hypos, 1)
    assert [s.hypotheses[0].sequence for s in results] == [s.hypotheses[0].sequence for s in plain]


def test_hypothesis_missing_from_the_record_is_scored_by_teacher_forcing() -> None:
    """A hypothesis the search did not produce (its first token replaced by one no row of its sentence starts with)
    is not in the record: ``locate`` says so and the whole batch is scored by teacher forcing, with that path's values."""
    dictionary, models = _models()
    net_input, _ = _batch(dictionary, nbest=1)
    hypos, ensemble = _search(models, dictionary, net_input, record_bytes=1 << 30)
    record = ensemble.record
    assert record is not None and record.complete
    sent = next(i for i, h in enumerate(hypos) if h[0]["tokens"].numel() >= 2)
    tokens = hypos[sent][0]["tokens"].clone()
    step = tokens.numel() - 1  # the rows of that sentence at the hypothesis' last step start with these tokens:
    starts = set(record.tokens[step][record.sentences[step].eq(sent), 1].tolist())
    tokens[0] = next(t for t in range(dictionary.nspecial, len(dictionary)) if t not in starts)
    assert record.locate([sent], [hypos[sent][0]["tokens"].tolist()]) is not None
    assert record.locate([sent], [tokens.tolist()]) is None
    hypos[sent][0]["tokens"] = tokens
    scorer = HypothesisScorer(models, "ensemble", pad=dictionary.pad(), eos=dictionary.eos())
    _assert_teacher_forced(scorer, net_input, hypos, record)


def test_prefix_hash_collisions_are_resolved_by_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a modulus of 1 every prefix hashes alike: ``locate`` must still find the same rows (by comparing the
    prefixes), and the Python hash equals the record's tensor recurrence."""
    from endist_seq.generation import search_record

    dictionary, models = _models()
    for model in models:  # as above: hypotheses of several lengths
        weight = model.decoder.output_projection.weight.data
        weight[dictionary.eos()] = 1.05 * weight[10]
    net_input, _ = _batch(dictionary, nbest=1)
    hypos, ensemble = _search(models, dictionary, net_input, record_bytes=1 << 30)
    record = ensemble.record
    assert record is not None and record.complete
    for step in range(1, len(record.tokens)):  # the tensor recurrence = the Python hash of each row's prefix
        assert record.hashes[step].tolist() == [search_record.prefix_hash(row) for row in record.tokens[step][:, 1:].tolist()]
    selected = [(i, j) for i in range(len(hypos)) for j in range(3)]
    sents, tokens = [i for i, _ in selected], [hypos[i][j]["tokens"].tolist() for i, j in selected]
    expected = record.locate(sents, tokens)
    assert expected is not None
    monkeypatch.setattr(search_record, "HASH_MODULUS", 1)
    hypos_collide, ensemble_collide = _search(models, dictionary, net_input, record_bytes=1 << 30)
    assert [[h["tokens"].tolist() for h in sent] for sent in hypos_collide] == [[h["tokens"].tolist() for h in sent] for sent in hypos]
    assert ensemble_collide.record is not None
    assert all(int(h.max()) == 0 for h in ensemble_collide.record.hashes)
    assert ensemble_collide.record.locate(sents, tokens) == expected
