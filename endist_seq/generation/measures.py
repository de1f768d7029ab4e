"""Token- and sequence-level uncertainty of translation hypotheses (Malinin & Gales, ICLR 2021).

Notation: a hypothesis y = (y_1 .. y_L) (L counts the final ``</s>``, as
fairseq's scores do), x the source; at position l the model gives a
distribution over the K target types given the prefix y_<l:

* **ensemble** of M members: P_m(· | y_<l, x), m = 1..M;
* **Dirichlet student**: Dir(α_l) with α_l = exp(z_l) + offset, expected
  distribution p̂_l = α_l / α_{l,0};
* **single model**: one distribution P(· | y_<l, x).

Token level (per position, from :mod:`shared.uncertainty`): ``total``,
``data``, ``mutual_information``, ``epkl``, ``rmi``, ``confidence`` of the
members (:func:`shared.uncertainty.ensemble_uncertainty`) or of Dir(α_l)
(:func:`shared.uncertainty.dirichlet_uncertainty`), plus ``log_prob`` =
ln P(y_l | y_<l, x) of the expected distribution (ensemble: ln (1/M) Σ_m P_m(y_l);
Dirichlet: ln p̂_l(y_l); single: ln P(y_l)). A single model has ``total``
(its entropy), ``confidence`` and ``log_prob`` only.

Sequence level (all in nats, per hypothesis; "higher = more uncertain" except
``score`` and ``avg_confidence``)::

    score   = fairseq's hypothesis score (Σ_l ln P(y_l) / L^lenpen, natural log)
    tu_pe   = −(1/L) Σ_l ln (1/M) Σ_m P_m(y_l | y_<l, x)         product of expectations
    tu_ep   = −(1/L) ln (1/M) Σ_m Π_l P_m(y_l | y_<l, x)          expectation of products
    du      = −(1/L) (1/M) Σ_m Σ_l ln P_m(y_l | y_<l, x)           data uncertainty
    ku_pe   = du − tu_pe ≥ 0      ku_ep = du − tu_ep ≥ 0          RMI-style knowledge uncertainty
    avg_<t> = (1/L) Σ_l t_l      for every token-level measure t (chain-rule estimates)

ku_pe and ku_ep are non-negative by Jensen's inequality (ln-mean ≥ mean-ln):
they are Monte-Carlo estimates, from the hypothesis, of the sequence-level
reverse mutual information E_m KL(P̄(y|x) ‖ P_m(y|x)) / L.

For the Dirichlet student the members are replaced by π_l ~ Dir(α_l)
(independent across positions), so P̄ = p̂ and E_π ln π_y = ψ(α_y) − ψ(α₀)::

    tu_pe = −(1/L) Σ_l ln p̂_l(y_l)
    du    = −(1/L) Σ_l (ψ(α_{l,y_l}) − ψ(α_{l,0}))
    ku_pe = du − tu_pe = (1/L) Σ_l (ln p̂_l(y_l) − ψ(α_{l,y_l}) + ψ(α_{l,0})) ≥ 0

``tu_ep``/``ku_ep`` need sequence-level members and are *undefined* for a
Dirichlet student; for a single model every data/knowledge measure is
undefined (the decomposition needs an ensemble or a Dirichlet), while
tu_pe = tu_ep = −(1/L) ln P(y|x). Undefined measures are ``None`` here and
printed as ``undefined`` — never as zeros.

n-best aggregation over the hypotheses h = 1..N of one source, with their
fairseq scores s_h and a temperature T > 0::

    w_h = exp(s_h / T) / Σ_h' exp(s_h' / T),      agg(u) = Σ_h w_h u_h
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from shared.uncertainty import UNCERTAINTY_KEYS, dirichlet_uncertainty, ensemble_uncertainty

MODEL_KINDS = ("ensemble", "dirichlet", "single")

#: token-level measures, in output order
TOKEN_MEASURES = ("log_prob",) + tuple(UNCERTAINTY_KEYS)

#: sequence-level measures, in output order
SEQUENCE_MEASURES = (
    "score",
    "tu_pe",
    "tu_ep",
    "du",
    "ku_pe",
    "ku_ep",
) + tuple(f"avg_{key}" for key in UNCERTAINTY_KEYS)

#: measures where a higher value means *more confident* (negate to rank by uncertainty)
CONFIDENCE_MEASURES = frozenset({"score", "avg_confidence"})

_TOKEN_UNDEFINED = {
    "ensemble": frozenset(),
    "dirichlet": frozenset(),
    "single": frozenset({"data", "mutual_information", "epkl", "rmi"}),
}
_SEQUENCE_UNDEFINED = {
    "ensemble": frozenset(),
    "dirichlet": frozenset({"tu_ep", "ku_ep"}),
    "single": frozenset({"du", "ku_pe", "ku_ep"} | {f"avg_{k}" for k in _TOKEN_UNDEFINED["single"]}),
}


def undefined_token_measures(kind: str) -> frozenset:
    """Token-level measures that ``kind`` cannot provide."""
    _check_kind(kind)
    return _TOKEN_UNDEFINED[kind]


def undefined_sequence_measures(kind: str) -> frozenset:
    """Sequence-level measures that ``kind`` cannot provide."""
    _check_kind(kind)
    return _SEQUENCE_UNDEFINED[kind]


def _check_kind(kind: str) -> None:
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")


@dataclass
class TokenStats:
    """Per-position quantities of P flattened hypothesis positions.

    Attributes:
        measures: token-level measures, ``[P]`` each (undefined ones absent).
        log_prob: ``[P]`` ln of the expected distribution at the chosen token.
        member_log_prob: ``[P, M]`` ln P_m(y_l) of each member (ensembles only).
        expected_log_prob: ``[P]`` E_{π~Dir(α)} ln π_{y_l} = ψ(α_y) − ψ(α₀) (Dirichlet only).
    """

    measures: Dict[str, Tensor]
    log_prob: Tensor
    member_log_prob: Optional[Tensor] = None
    expected_log_prob: Optional[Tensor] = None


def ensemble_token_stats(log_probs: Tensor, targets: Tensor) -> TokenStats:
    """Token stats of an ensemble from member log-probs ``[P, M, K]`` and chosen tokens ``[P]``."""
    if log_probs.dim() != 3 or targets.shape != log_probs.shape[:1]:
        raise ValueError(f"expected log_probs [P, M, K] and targets [P], got {tuple(log_probs.shape)}, {tuple(targets.shape)}")
    measures = ensemble_uncertainty(log_probs)
    index = targets.view(-1, 1, 1).expand(-1, log_probs.shape[1], 1)
    member = log_probs.gather(-1, index).squeeze(-1).to(torch.float64)  # [P, M]
    log_prob = torch.logsumexp(member, dim=-1) - math.log(member.shape[-1])
    return TokenStats(measures=measures, log_prob=log_prob, member_log_prob=member)


def dirichlet_token_stats(alphas: Tensor, targets: Tensor) -> TokenStats:
    """Token stats of a Dirichlet student from concentrations ``[P, K]`` and chosen tokens ``[P]``."""
    if alphas.dim() != 2 or targets.shape != alphas.shape[:1]:
        raise ValueError(f"expected alphas [P, K] and targets [P], got {tuple(alphas.shape)}, {tuple(targets.shape)}")
    measures = dirichlet_uncertainty(alphas)
    a = alphas.to(torch.float64)
    a0 = a.sum(-1)
    a_y = a.gather(-1, targets.view(-1, 1)).squeeze(-1)
    return TokenStats(
        measures=measures,
        log_prob=a_y.log() - a0.log(),
        expected_log_prob=torch.digamma(a_y) - torch.digamma(a0),
    )


def single_token_stats(log_probs: Tensor, targets: Tensor) -> TokenStats:
    """Token stats of one model from its log-probs ``[P, K]``: entropy (``total``), ``confidence``."""
    if log_probs.dim() != 2 or targets.shape != log_probs.shape[:1]:
        raise ValueError(f"expected log_probs [P, K] and targets [P], got {tuple(log_probs.shape)}, {tuple(targets.shape)}")
    full = ensemble_uncertainty(log_probs.unsqueeze(-2))  # M = 1: total = entropy
    measures = {key: value for key, value in full.items() if key not in _TOKEN_UNDEFINED["single"]}
    log_prob = log_probs.gather(-1, targets.view(-1, 1)).squeeze(-1).to(torch.float64)
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
        kind: ``"ensemble"``, ``"dirichlet"`` or ``"single"``.
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
        du = -member_sums.mean(-1) / length
        out.update(tu_ep=tu_ep, du=du, ku_pe=du - tu_pe, ku_ep=du - tu_ep)
    elif kind == "dirichlet":
        assert stats.expected_log_prob is not None
        du = -_segment_sum(stats.expected_log_prob, segment, n) / length
        out.update(du=du, ku_pe=du - tu_pe)
    else:
        out["tu_ep"] = tu_pe
    for key, value in stats.measures.items():
        out[f"avg_{key}"] = _segment_sum(value, segment, n) / length
    for key in _SEQUENCE_UNDEFINED[kind]:
        out[key] = None
    return out


def posterior_weights(scores: Tensor, temperature: float = 1.0) -> Tensor:
    """Beam-posterior weights w_h = softmax(s_h / T) of one source's n-best scores ``[N]``."""
    if not temperature > 0:
        raise ValueError(f"n-best posterior temperature must be > 0, got {temperature}")
    return torch.softmax(scores.to(torch.float64) / temperature, dim=-1)


def aggregate(values: Sequence[Optional[float]], weights: Sequence[float]) -> Optional[float]:
    """Σ_h w_h u_h over the n-best list; ``None`` if the measure is undefined."""
    if len(values) != len(weights):
        raise ValueError(f"{len(values)} values but {len(weights)} weights")
    if any(v is None for v in values):
        return None
    return float(sum(w * v for w, v in zip(weights, values)))  # type: ignore[operator]
