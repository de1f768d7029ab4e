"""Expectation-of-products (EP) chain rule, renamed estimators and n-best weights (issue 14, items 1-3).

Checked against independent float64 computations: member posteriors from explicit products,
and exact expectations by enumerating every hypothesis of a tiny ensemble (V = 3, L = 3).
No fairseq process.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from endist_seq.generation import measures as M
from shared.uncertainty import ensemble_uncertainty

V, L, MEMBERS = 3, 3, 3


def _tiny_ensemble(seed: int = 0):
    """Autoregressive members: P_m(y_l | y<l) from a table indexed by the prefix (float64)."""
    rng = np.random.default_rng(seed)
    tables = {}
    for l in range(L):
        for prefix in itertools.product(range(V), repeat=l):
            logits = 2.0 * rng.standard_normal((MEMBERS, V))
            p = np.exp(logits)
            tables[prefix] = p / p.sum(-1, keepdims=True)  # [M, V]
    return tables


def _stats_of(tables, hypotheses):
    """Our measures for the given hypotheses (all of length L), flattened as the scorer does."""
    log_probs, targets = [], []
    for y in hypotheses:
        for l in range(L):
            log_probs.append(np.log(tables[tuple(y[:l])]))
            targets.append(y[l])
    lengths = torch.full((len(hypotheses),), L)
    segment = torch.arange(len(hypotheses)).repeat_interleave(lengths)
    stats = M.ensemble_token_stats(torch.tensor(np.array(log_probs)), torch.tensor(targets), segment, lengths)
    return stats, M.sequence_measures(stats, segment, lengths, "ensemble")


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_ep_weights_are_bayes_posteriors_and_token_measures_match_definitions() -> None:
    tables = _tiny_ensemble(1)
    hyps = list(itertools.product(range(V), repeat=L))
    stats, _ = _stats_of(tables, hyps)
    pos = 0
    for y in hyps:
        for l in range(L):
            # posterior of member m given the prefix, uniform prior: Π_{j<l} P_m(y_j) / Σ_k Π_{j<l} P_k(y_j)
            prior = np.array([np.prod([tables[tuple(y[:j])][m, y[j]] for j in range(l)]) for m in range(MEMBERS)])
            w = prior / prior.sum()
            P = tables[tuple(y[:l])]
            mix = w @ P
            kl = lambda a, b: float((a * np.log(a / b)).sum())  # noqa: E731
            total = _entropy(mix)
            data = sum(w[m] * _entropy(P[m]) for m in range(MEMBERS))
            epkl = sum(w[m] * w[n] * kl(P[m], P[n]) for m in range(MEMBERS) for n in range(MEMBERS))
            rmi = sum(w[m] * kl(mix, P[m]) for m in range(MEMBERS))
            expected = {"total": total, "data": data, "mutual_information": total - data, "epkl": epkl,
                        "rmi": rmi, "confidence": mix.max(), "log_prob": math.log(mix[y[l]])}
            for key, value in expected.items():
                assert stats.measures[f"ep_{key}"][pos].item() == pytest.approx(value, rel=1e-10, abs=1e-12), (y, l, key)
            pe_mix = P.mean(0)
            assert stats.measures["pe_total"][pos].item() == pytest.approx(_entropy(pe_mix), rel=1e-10)
            assert stats.measures["pe_log_prob"][pos].item() == pytest.approx(math.log(pe_mix[y[l]]), rel=1e-10)
            pos += 1


def test_exact_expectations_by_enumerating_every_hypothesis() -> None:
    """Over y ~ P̄(y) = (1/M)Σ_m P_m(y) (fixed length L): E[L·ep_total] = E[L·tu_ep] = H[P̄(y)],
    E[L·ep_data] = (1/M)Σ_m H[P_m(y)], E[L·member_nll] = H[P̄] + (1/M)Σ_m KL(P̄‖P_m) = E[L·(tu_ep + ku_ep)] ."""
    tables = _tiny_ensemble(2)
    hyps = list(itertools.product(range(V), repeat=L))
    member_seq = np.array([[np.prod([tables[tuple(y[:l])][m, y[l]] for l in range(L)]) for m in range(MEMBERS)]
                           for y in hyps])  # [H, M]
    assert member_seq.sum(0) == pytest.approx(np.ones(MEMBERS))
    mix = member_seq.mean(1)
    seq_total = _entropy(mix)
    seq_data = float(np.mean([_entropy(member_seq[:, m]) for m in range(MEMBERS)]))
    seq_rmi = float(np.mean([(mix * np.log(mix / member_seq[:, m])).sum() for m in range(MEMBERS)]))
    _, seq = _stats_of(tables, hyps)

    def expectation(name: str) -> float:
        return float((mix * L * seq[name].numpy()).sum())

    assert expectation("ep_total") == pytest.approx(seq_total, rel=1e-10)
    assert expectation("tu_ep") == pytest.approx(seq_total, rel=1e-10)
    assert expectation("ep_data") == pytest.approx(seq_data, rel=1e-10)
    assert expectation("ep_mutual_information") == pytest.approx(seq_total - seq_data, rel=1e-10)
    assert expectation("member_nll") == pytest.approx(seq_total + seq_rmi, rel=1e-10)
    assert expectation("ku_ep") == pytest.approx(seq_rmi, rel=1e-10)
    # the old name "du" was not data uncertainty: its expectation exceeds the data uncertainty here
    assert expectation("member_nll") > seq_data + 0.1
    # the PE chain rule is not exact for the sequence predictive (members differ)
    assert abs(expectation("pe_total") - seq_total) > 1e-3


def test_uniform_weights_reproduce_pe_and_identical_members_make_ep_equal_pe() -> None:
    g = torch.Generator().manual_seed(3)
    log_probs = torch.log_softmax(3 * torch.randn(6, 4, 5, generator=g, dtype=torch.float64), -1)
    uniform = torch.full((6, 4), -math.log(4), dtype=torch.float64)
    ours = M.weighted_ensemble_uncertainty(log_probs, uniform)
    for key, value in ensemble_uncertainty(log_probs).items():
        assert torch.allclose(ours[key], value, rtol=1e-12, atol=1e-12), key
    same = log_probs[:, :1].expand(-1, 3, -1).contiguous()
    targets = torch.randint(0, 5, (6,), generator=g)
    lengths = torch.tensor([4, 2])
    segment = torch.arange(2).repeat_interleave(lengths)
    stats = M.ensemble_token_stats(same, targets, segment, lengths)
    for key in ("total", "data", "confidence", "log_prob"):
        assert torch.allclose(stats.measures[f"ep_{key}"], stats.measures[f"pe_{key}"], rtol=1e-12, atol=1e-12), key


def test_long_hypotheses_do_not_underflow() -> None:
    """2000 positions where members disagree: Π_l P_m(y_l) underflows float64, the log-space weights do not."""
    g = torch.Generator().manual_seed(4)
    length, members, vocab = 2000, 3, 6
    log_probs = torch.log_softmax(4 * torch.randn(length, members, vocab, generator=g), -1)  # float32, as fairseq
    targets = torch.randint(0, vocab, (length,), generator=g)
    lengths = torch.tensor([length])
    segment = torch.zeros(length, dtype=torch.long)
    member = log_probs.double().gather(-1, targets.view(-1, 1, 1).expand(-1, members, 1)).squeeze(-1)
    assert member.sum(0).exp().max().item() == 0.0  # the naive product underflows
    weights = M.prefix_log_weights(member, segment, lengths).exp()
    assert torch.isfinite(weights).all() and torch.allclose(weights.sum(-1), torch.ones(length, dtype=torch.float64))
    # reference: exclusive prefix sums by a Python loop, normalised by subtracting the max (float64)
    running = np.zeros(members)
    for l in (0, 1, 7, 500, 1999):
        prefix = member[:l].sum(0).numpy() if l else running
        ref = np.exp(prefix - prefix.max())
        ref /= ref.sum()
        assert np.allclose(weights[l].numpy(), ref, rtol=1e-9, atol=1e-300), l
    stats = M.ensemble_token_stats(log_probs, targets, segment, lengths)
    seq = M.sequence_measures(stats, segment, lengths, "ensemble")
    for name in M.SEQUENCE_MEASURES[1:]:
        assert torch.isfinite(seq[name]).all(), name
    # chain rule: Σ_l ln P_EP(y_l|y<l) = ln (1/M) Σ_m P_m(y)
    assert (-stats.measures["ep_log_prob"].sum() / length).item() == pytest.approx(seq["tu_ep"].item(), rel=1e-9)


def test_zero_probability_members_keep_measures_defined() -> None:
    """A member giving probability 0 to a chosen token gets weight 0 afterwards (no NaN anywhere)."""
    log_probs = torch.log_softmax(torch.tensor([[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]] * 3, dtype=torch.float64), -1)
    log_probs[0, 1, 0] = -math.inf
    log_probs[0, 1] = torch.log_softmax(log_probs[0, 1], -1)
    targets = torch.tensor([0, 1, 2])
    lengths = torch.tensor([3])
    stats = M.ensemble_token_stats(log_probs, targets, torch.zeros(3, dtype=torch.long), lengths)
    weights = M.prefix_log_weights(stats.member_log_prob, torch.zeros(3, dtype=torch.long), lengths).exp()
    assert weights[1].tolist() == [1.0, 0.0] and weights[2].tolist() == [1.0, 0.0]
    for key, value in stats.measures.items():
        assert not torch.isnan(value).any(), key
    assert stats.measures["ep_total"][1].item() == pytest.approx(stats.measures["pe_total"][1].item(), rel=1e-12)


def test_renamed_measures_and_legacy_names() -> None:
    assert "du" not in M.SEQUENCE_MEASURES and "member_nll" in M.SEQUENCE_MEASURES
    assert M.current_name("du") == "member_nll" and M.current_name("avg_rmi") == "pe_rmi"
    assert M.current_name("ep_rmi") == "ep_rmi"
    assert {"pe_total", "ep_total", "pe_rmi", "ep_rmi", "ep_epkl"} <= set(M.SEQUENCE_MEASURES)
    assert M.undefined_sequence_measures("dirichlet") >= {"tu_ep", "ep_total", "ep_rmi"}
    assert "ep_total" not in M.undefined_sequence_measures("single")


def test_nbest_weights_modes() -> None:
    scores = torch.tensor([-0.2, -0.5, -0.4])
    log_probs = torch.tensor([-2.0, -1.0, -8.0])
    w = M.nbest_weights("logprob", scores, log_probs, temperature=0.5)
    ref = np.exp(np.array([-2.0, -1.0, -8.0]) / 0.5)
    assert np.allclose(w.numpy(), ref / ref.sum(), rtol=1e-12)
    ref = np.exp(np.array([-0.2, -0.5, -0.4]))
    assert np.allclose(M.nbest_weights("score", scores, log_probs).numpy(), ref / ref.sum(), rtol=1e-6)
    assert M.nbest_weights("uniform", scores).tolist() == [1 / 3] * 3
    with pytest.raises(ValueError, match="--nbest-weights"):
        M.nbest_weights("softmax", scores)
    with pytest.raises(ValueError, match="log-prob"):
        M.nbest_weights("logprob", scores)


def test_new_flags_are_validated_naming_the_flag() -> None:
    from endist_seq.errors import FlagError
    from endist_seq.tasks.translation_uncertainty import TranslationUncertaintyConfig, _validate

    cfg = TranslationUncertaintyConfig()
    cfg.ensemble_combination = "ep"
    with pytest.raises(FlagError, match="--ensemble-combination ep needs --compute-uncertainty"):
        _validate(cfg)
    cfg.compute_uncertainty = True
    _validate(cfg)
    cfg.nbest_weights = "softmax"
    with pytest.raises(FlagError, match="--nbest-weights"):
        _validate(cfg)
