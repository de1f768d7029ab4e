"""Token- and sequence-level uncertainty of translation hypotheses (Malinin & Gales, ICLR 2021).

Notation: a hypothesis y = (y_1 .. y_L) (L counts the final ``</s>``, as
fairseq's scores do), x the source; at position l the model gives a
distribution over the K target types given the prefix y_<l:

* **ensemble** of M members: P_m(· | y_<l, x), m = 1..M;
* **Dirichlet student**: Dir(α_l) with α_l = exp(z_l) + offset, expected
  distribution p̂_l = α_l / α_{l,0};
* **proxy**: an ensemble read through its own Proxy-Dirichlet target
  Dir(β_l), β_l = p̄_l · β̂₀,l + 1 ([Proxy] eq. 17, Table 2 "Proxy" row), then as a Dirichlet;
* **single model**: one distribution P(· | y_<l, x).

Token level: two **chain rules** (Malinin & Gales 2021, §3) give the token
distributions whose measures are averaged over positions:

* **product of expectations** (``pe_*``): the members are averaged with equal
  weights at every position, P_PE(·|y<l) = (1/M) Σ_m P_m(·|y<l)
  (:func:`shared.uncertainty.ensemble_uncertainty`; for a Dirichlet
  :func:`shared.uncertainty.dirichlet_uncertainty`);
* **expectation of products** (``ep_*``, ensembles only): member m is weighted by its
  posterior given the prefix, w_m(y<l) = P_m(y<l|x) / Σ_k P_k(y<l|x) (from the cumulative
  log-probs, in log space), P_EP(·|y<l) = Σ_m w_m P_m(·|y<l), and
  total = H[P_EP], data = Σ_m w_m H[P_m], mutual_information = total − data,
  epkl = Σ_m Σ_n w_m w_n KL(P_m‖P_n), rmi = Σ_m w_m KL(P_EP‖P_m),
  confidence = max P_EP (:func:`shared.uncertainty.weighted_ensemble_uncertainty`). Because
  Π_l P_EP(y_l|y<l) = (1/M) Σ_m P_m(y|x), the EP chain rule is the exact
  factorisation of the sequence-level ensemble predictive.

``<rule>_log_prob`` = ln P_<rule>(y_l | y_<l, x) at the chosen token. A single
model has ``*_total`` (its entropy), ``*_confidence`` and ``*_log_prob`` only
(PE = EP for M = 1); a Dirichlet has no EP chain rule (no members).

Sequence level (all in nats, per hypothesis; "higher = more uncertain" except
``score`` and ``*_confidence``)::

    score       = fairseq's hypothesis score (Σ_l ln P(y_l) / L^lenpen, natural log)
    tu_pe       = −(1/L) Σ_l ln (1/M) Σ_m P_m(y_l | y_<l, x)     = −(1/L) Σ_l pe_log_prob_l
    tu_ep       = −(1/L) ln (1/M) Σ_m Π_l P_m(y_l | y_<l, x)     = −(1/L) Σ_l ep_log_prob_l
    member_nll  = −(1/L) (1/M) Σ_m Σ_l ln P_m(y_l | y_<l, x)       mean member cross-entropy
    ku_pe = member_nll − tu_pe ≥ 0      ku_ep = member_nll − tu_ep ≥ 0
    pe_<t>, ep_<t> = (1/L) Σ_l t_l    for t in total, data, mutual_information, epkl, rmi, confidence

Expectations over y ~ P_EP(y|x) (sequence level, times 1/L): tu_ep estimates the
total uncertainty H[P_EP(y|x)]; ``member_nll`` estimates H[P_EP(y|x)] +
(1/M) Σ_m KL(P_EP(y|x) ‖ P_m(y|x)) = total + reverse mutual information, a
cross-entropy *upper bound* on total uncertainty, **not** data uncertainty
(data uncertainty is ``ep_data``/``pe_data``); ku_ep estimates the sequence-level
RMI, ku_pe its PE analogue; both are ≥ 0 by Jensen. (``member_nll`` was called
``du`` before issue 14; old names are read back by :data:`LEGACY_NAMES`.)

For a Dirichlet (student or proxy) the members are replaced by π_l ~ Dir(α_l)
(independent across positions), so P̄ = p̂ and E_π ln π_y = ψ(α_y) − ψ(α₀)::

    tu_pe      = −(1/L) Σ_l ln p̂_l(y_l)
    member_nll = −(1/L) Σ_l (ψ(α_{l,y_l}) − ψ(α_{l,0}))      (expectation: total + rmi per token)
    ku_pe      = member_nll − tu_pe ≥ 0

``tu_ep``/``ku_ep``/``ep_*`` need members and are *undefined* for a Dirichlet; for
a single model every data/knowledge measure is undefined, while tu_pe = tu_ep
= −(1/L) ln P(y|x). Undefined measures are ``None`` here and printed as
``undefined`` — never as zeros.

n-best aggregation over the hypotheses h = 1..N of one source with a
temperature T > 0 (:func:`nbest_weights`)::

    logprob (default): w_h = softmax_h(ln P(y_h|x) / T), ln P(y_h|x) = Σ_l ln P(y_{h,l}|y_{h,<l}, x) (unnormalised)
    score:             w_h = softmax_h(s_h / T), s_h = fairseq's length-normalised score
    uniform:           w_h = 1/N   (sampled hypotheses: plain Monte-Carlo average)
    agg(u) = Σ_h w_h u_h
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from shared.uncertainty import (
    UNCERTAINTY_KEYS,
    dirichlet_uncertainty,
    ensemble_uncertainty,
    weighted_ensemble_uncertainty,
)

from endist_seq.generation.measure_names import (  # noqa: F401  (re-exported; torch-free home)
    MODEL_KINDS,
    CHAIN_RULES,
    NBEST_WEIGHTS,
    TOKEN_MEASURES,
    SEQUENCE_MEASURES,
    CONFIDENCE_MEASURES,
    LEGACY_NAMES,
    current_name,
    undefined_token_measures,
    undefined_sequence_measures,
    _check_kind,
    _MEMBERLESS,
    _SINGLE_TOKEN,
    _TOKEN_UNDEFINED,
    _SEQUENCE_UNDEFINED,
)


@dataclass
class TokenStats:
    """Per-position quantities of P flattened hypothesis positions.

    Attributes:
        measures: token-level measures by their :data:`TOKEN_MEASURES` name, ``[P]`` each
            (undefined ones absent).
        log_prob: ``[P]`` ln P_PE(y_l), the expected (PE) distribution at the chosen token.
        member_log_prob: ``[P, M]`` ln P_m(y_l) of each member (ensembles only).
        expected_log_prob: ``[P]`` E_{π~Dir(α)} ln π_{y_l} = ψ(α_y) − ψ(α₀) (Dirichlet only).
    """

    measures: Dict[str, Tensor]
    log_prob: Tensor
    member_log_prob: Optional[Tensor] = None
    expected_log_prob: Optional[Tensor] = None


def prefix_log_weights(member_log_prob: Tensor, segment: Tensor, lengths: Tensor) -> Tensor:
    """ln w_m(y<l) = ln P_m(y<l|x) − ln Σ_k P_k(y<l|x) of every position, ``[P, M]`` float64.

    ``member_log_prob`` ``[P, M]`` holds ln P_m(y_l|y<l, x); the positions of hypothesis n
    (``segment == n``) are consecutive and in order, ``lengths[n]`` of them. ln P_m(y<l|x)
    is the exclusive cumulative sum within the hypothesis (0 at l = 1: uniform weights).
    Computed in log space on a padded ``[N, L_max, M]`` layout (no subtraction of cumulative
    sums, so −inf log-probs stay −inf); a prefix that every member gives probability 0
    falls back to uniform weights.
    """
    member = member_log_prob.to(torch.float64)
    n, m = int(lengths.numel()), member.shape[-1]
    lengths = lengths.to(device=member.device, dtype=torch.long)
    starts = torch.cumsum(lengths, 0) - lengths
    position = torch.arange(member.shape[0], device=member.device) - starts[segment]
    padded = member.new_zeros((n, int(lengths.max()) if n else 0, m))
    padded[segment, position] = member
    exclusive = torch.cat([padded.new_zeros((n, 1, m)), torch.cumsum(padded, dim=1)[:, :-1]], dim=1)
    prefix = exclusive[segment, position]  # [P, M]
    norm = torch.logsumexp(prefix, dim=-1, keepdim=True)
    uniform = torch.full_like(prefix, -math.log(m))
    return torch.where(torch.isfinite(norm), prefix - norm, uniform)


def ensemble_token_stats(log_probs: Tensor, targets: Tensor, segment: Tensor, lengths: Tensor) -> TokenStats:
    """Token stats of an ensemble (both chain rules) from member log-probs ``[P, M, K]`` and chosen tokens ``[P]``.

    ``segment`` ``[P]`` / ``lengths`` ``[N]``: hypothesis of each position (consecutive, in
    order) and positions per hypothesis, for the EP prefix weights (:func:`prefix_log_weights`).
    """
    if log_probs.dim() != 3 or targets.shape != log_probs.shape[:1]:
        raise ValueError(f"expected log_probs [P, M, K] and targets [P], got {tuple(log_probs.shape)}, {tuple(targets.shape)}")
    pe = ensemble_uncertainty(log_probs)
    index = targets.view(-1, 1, 1).expand(-1, log_probs.shape[1], 1)
    member = log_probs.gather(-1, index).squeeze(-1).to(torch.float64)  # [P, M]
    log_prob = torch.logsumexp(member, dim=-1) - math.log(member.shape[-1])
    log_weights = prefix_log_weights(member, segment, lengths)
    # the measures in the distributions' own precision (float32 for float32/half, float64 for float64): float64
    # weights would promote the whole [P, M, K] computation to float64 (1.5x its time)
    ep = weighted_ensemble_uncertainty(log_probs, log_weights.to(torch.promote_types(log_probs.dtype, torch.float32)))
    measures = {"pe_log_prob": log_prob, "ep_log_prob": torch.logsumexp(member + log_weights, dim=-1)}
    measures.update({f"pe_{k}": v for k, v in pe.items()})
    measures.update({f"ep_{k}": v for k, v in ep.items()})
    return TokenStats(measures=measures, log_prob=log_prob, member_log_prob=member)


def dirichlet_token_stats(alphas: Tensor, targets: Tensor) -> TokenStats:
    """Token stats of a Dirichlet (student or proxy target) from concentrations ``[P, K]`` and chosen tokens ``[P]``."""
    if alphas.dim() != 2 or targets.shape != alphas.shape[:1]:
        raise ValueError(f"expected alphas [P, K] and targets [P], got {tuple(alphas.shape)}, {tuple(targets.shape)}")
    a = alphas.to(torch.float64)
    a0 = a.sum(-1)
    a_y = a.gather(-1, targets.view(-1, 1)).squeeze(-1)
    log_prob = a_y.log() - a0.log()
    measures = {f"pe_{k}": v for k, v in dirichlet_uncertainty(alphas).items()}
    measures["pe_log_prob"] = log_prob
    return TokenStats(measures=measures, log_prob=log_prob, expected_log_prob=torch.digamma(a_y) - torch.digamma(a0))


def single_token_stats(log_probs: Tensor, targets: Tensor) -> TokenStats:
    """Token stats of one model from its log-probs ``[P, K]``: entropy (``*_total``), ``*_confidence``, ``*_log_prob``
    (both chain rules coincide for M = 1)."""
    if log_probs.dim() != 2 or targets.shape != log_probs.shape[:1]:
        raise ValueError(f"expected log_probs [P, K] and targets [P], got {tuple(log_probs.shape)}, {tuple(targets.shape)}")
    full = ensemble_uncertainty(log_probs.unsqueeze(-2))  # M = 1: total = entropy
    log_prob = log_probs.gather(-1, targets.view(-1, 1)).squeeze(-1).to(torch.float64)
    measures: Dict[str, Tensor] = {}
    for rule in CHAIN_RULES:
        measures[f"{rule}_log_prob"] = log_prob
        measures[f"{rule}_total"] = full["total"]
        measures[f"{rule}_confidence"] = full["confidence"]
    return TokenStats(measures=measures, log_prob=log_prob)


def concat_token_stats(parts: Sequence[TokenStats]) -> TokenStats:
    """Concatenate stats computed on consecutive chunks of positions."""
    if not parts:
        raise ValueError("no token stats to concatenate")
    first = parts[0]

    def cat(values: List[Optional[Tensor]]) -> Optional[Tensor]:
        return None if values[0] is None else torch.cat(values, dim=0)  # type: ignore[arg-type]

    return TokenStats(
        measures={key: torch.cat([p.measures[key] for p in parts]) for key in first.measures},
        log_prob=torch.cat([p.log_prob for p in parts]),
        member_log_prob=cat([p.member_log_prob for p in parts]),
        expected_log_prob=cat([p.expected_log_prob for p in parts]),
    )


def _segment_sum(values: Tensor, segment: Tensor, n: int) -> Tensor:
    """Σ over positions of each hypothesis: ``[P, ...]`` → ``[n, ...]`` (float64)."""
    out = torch.zeros((n,) + tuple(values.shape[1:]), dtype=torch.float64, device=values.device)
    return out.index_add_(0, segment, values.to(torch.float64))


def sequence_measures(
    stats: TokenStats, segment: Tensor, lengths: Tensor, kind: str, scores: Optional[Tensor] = None
) -> Dict[str, Optional[Tensor]]:
    """Sequence-level measures (module docstring) of N hypotheses.

    Args:
        stats: token stats of all P positions.
        segment: ``[P]`` hypothesis index of each position (0..N−1).
        lengths: ``[N]`` number of positions L of each hypothesis (``</s>`` included).
        kind: one of :data:`MODEL_KINDS`.
        scores: ``[N]`` fairseq hypothesis scores (natural log), copied to ``score``.

    Returns:
        dict over :data:`SEQUENCE_MEASURES` of ``[N]`` float64 tensors, ``None`` where undefined.
    """
    _check_kind(kind)
    n = int(lengths.numel())
    length = lengths.to(torch.float64)
    out: Dict[str, Optional[Tensor]] = {name: None for name in SEQUENCE_MEASURES}
    out["score"] = None if scores is None else scores.to(torch.float64)
    tu_pe = -_segment_sum(stats.log_prob, segment, n) / length
    out["tu_pe"] = tu_pe
    if kind == "ensemble":
        assert stats.member_log_prob is not None
        member_sums = _segment_sum(stats.member_log_prob, segment, n)  # [N, M]: ln P_m(y|x)
        m = member_sums.shape[-1]
        tu_ep = -(torch.logsumexp(member_sums, dim=-1) - math.log(m)) / length
        nll = -member_sums.mean(-1) / length
        out.update(tu_ep=tu_ep, member_nll=nll, ku_pe=nll - tu_pe, ku_ep=nll - tu_ep)
    elif kind in ("dirichlet", "proxy"):
        assert stats.expected_log_prob is not None
        nll = -_segment_sum(stats.expected_log_prob, segment, n) / length
        out.update(member_nll=nll, ku_pe=nll - tu_pe)
    else:
        out["tu_ep"] = tu_pe
    keys = [key for key in stats.measures if not key.endswith("_log_prob")]
    if keys:  # every measure's per-hypothesis mean in one segment sum (column c of [P, K] is measure c)
        block = torch.stack([stats.measures[key].to(torch.float64) for key in keys], dim=1)
        means = _segment_sum(block, segment, n) / length.unsqueeze(1)
        for column, key in enumerate(keys):
            out[key] = means[:, column]
    for key in _SEQUENCE_UNDEFINED[kind]:
        out[key] = None
    return out


def nbest_weights(
    mode: str, scores: Tensor, log_probs: Optional[Tensor] = None, temperature: float = 1.0
) -> Tensor:
    """Weights of one source's N hypotheses (module docstring): ``[N]`` float64 summing to 1.

    Args:
        mode: ``"logprob"`` (softmax of ln P(y|x) / T), ``"score"`` (softmax of score / T) or ``"uniform"``.
        scores: ``[N]`` fairseq scores.
        log_probs: ``[N]`` unnormalised sequence log-probabilities Σ_l ln P(y_l|y<l, x) (``"logprob"``).
        temperature: T > 0.
    """
    if mode not in NBEST_WEIGHTS:
        raise ValueError(f"--nbest-weights must be one of {NBEST_WEIGHTS}, got {mode!r}")
    if not temperature > 0:
        raise ValueError(f"n-best posterior temperature must be > 0, got {temperature}")
    if mode == "uniform":
        return torch.full((scores.numel(),), 1.0 / scores.numel(), dtype=torch.float64)
    if mode == "logprob":
        if log_probs is None:
            raise ValueError("--nbest-weights logprob needs the hypotheses' sequence log-probabilities")
        return torch.softmax(log_probs.to(torch.float64) / temperature, dim=-1)
    return torch.softmax(scores.to(torch.float64) / temperature, dim=-1)


def posterior_weights(scores: Tensor, temperature: float = 1.0) -> Tensor:
    """Beam-posterior weights w_h = softmax(s_h / T) of one source's n-best scores ``[N]`` (``--nbest-weights score``)."""
    return nbest_weights("score", scores, temperature=temperature)


def aggregate(values: Sequence[Optional[float]], weights: Sequence[float]) -> Optional[float]:
    """Σ_h w_h u_h over the n-best list; ``None`` if the measure is undefined."""
    if len(values) != len(weights):
        raise ValueError(f"{len(values)} values but {len(weights)} weights")
    if any(v is None for v in values):
        return None
    # a hypothesis of weight 0 contributes nothing, even where its value is ±inf (0·inf would make the sum NaN)
    return float(sum(w * v for w, v in zip(weights, values) if w != 0))  # type: ignore[operator]
