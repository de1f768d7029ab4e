"""Names of the generation uncertainty measures, legacy aliases and which model kinds leave which undefined.

Torch-free, so ``endist-seq-eval`` and the output parser can use them without importing torch;
:mod:`endist_seq.generation.measures` (which computes the measures, formulas there) re-exports all of it.
"""

from __future__ import annotations

from typing import Dict

from shared.uncertainty_keys import UNCERTAINTY_KEYS

#: printed for a measure a model kind cannot provide (never a zero)
UNDEFINED = "undefined"

MODEL_KINDS = ("ensemble", "dirichlet", "proxy", "single")
CHAIN_RULES = ("pe", "ep")
NBEST_WEIGHTS = ("logprob", "score", "uniform")

#: token-level measures, in output order
TOKEN_MEASURES = tuple(f"{rule}_{key}" for rule in CHAIN_RULES for key in ("log_prob",) + tuple(UNCERTAINTY_KEYS))

#: sequence-level measures, in output order
SEQUENCE_MEASURES = (
    "score",
    "tu_pe",
    "tu_ep",
    "member_nll",
    "ku_pe",
    "ku_ep",
) + tuple(f"{rule}_{key}" for rule in CHAIN_RULES for key in UNCERTAINTY_KEYS)

#: measures where a higher value means *more confident* (negate to rank by uncertainty)
CONFIDENCE_MEASURES = frozenset({"score", "pe_confidence", "ep_confidence"})

#: names used before issue 14 → current names (parsers and ``--headline`` accept both)
LEGACY_NAMES: Dict[str, str] = {"du": "member_nll", "log_prob": "pe_log_prob"}
LEGACY_NAMES.update({f"avg_{key}": f"pe_{key}" for key in UNCERTAINTY_KEYS})
LEGACY_NAMES.update({key: f"pe_{key}" for key in UNCERTAINTY_KEYS})


def current_name(name: str) -> str:
    """The current name of a measure (old names of :data:`LEGACY_NAMES` mapped, others unchanged)."""
    return LEGACY_NAMES.get(name, name)


_MEMBERLESS = frozenset(f"ep_{key}" for key in ("log_prob",) + tuple(UNCERTAINTY_KEYS))
_SINGLE_TOKEN = frozenset(
    f"{rule}_{key}" for rule in CHAIN_RULES for key in ("data", "mutual_information", "epkl", "rmi")
)
_TOKEN_UNDEFINED = {
    "ensemble": frozenset(),
    "dirichlet": _MEMBERLESS,
    "proxy": _MEMBERLESS,
    "single": _SINGLE_TOKEN,
}
_SEQUENCE_UNDEFINED = {
    "ensemble": frozenset(),
    "dirichlet": frozenset({"tu_ep", "ku_ep"}) | (_MEMBERLESS - {"ep_log_prob"}),
    "proxy": frozenset({"tu_ep", "ku_ep"}) | (_MEMBERLESS - {"ep_log_prob"}),
    "single": frozenset({"member_nll", "ku_pe", "ku_ep"}) | _SINGLE_TOKEN,
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
