"""Read back what ``fairseq-generate --task translation_uncertainty --compute-uncertainty`` wrote.

Two inputs are accepted (format: :mod:`endist_seq.generation.output`):

* the generate text output (stdout or ``--results-path``'s ``generate-<subset>.txt``):
  ``T-`` (reference), ``D-`` (detokenised hypotheses, rank order), ``U-``
  (sequence measures per rank) and ``UW-`` (n-best weighted) lines; other lines
  (``S-``, ``H-``, ``P-``, ``UT-``, logging) are ignored;
* the ``--uncertainty-jsonl`` file (``*.jsonl``): one record per sentence.

Errors name the file (and line) and what is wrong.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from endist_seq.generation.measure_names import UNDEFINED, current_name


class GenerateOutputError(ValueError):
    """A generate output file is missing, malformed or lacks uncertainty lines."""


@dataclass
class GeneratedSentence:
    """One source sentence: reference, top-1 hypothesis, measures per rank and the n-best aggregate."""

    id: int
    reference: Optional[str] = None
    hypotheses: List[str] = field(default_factory=list)
    measures: Dict[int, Dict[str, Optional[float]]] = field(default_factory=dict)
    weighted: Optional[Dict[str, Optional[float]]] = None
    #: tokenised top-1 hypothesis (``H-`` line / JSONL ``text``) and its ``UT-`` values per token measure
    tokenised: Optional[str] = None
    token_measures: Optional[Dict[str, Optional[List[float]]]] = None

    @property
    def top1(self) -> Optional[str]:
        return self.hypotheses[0] if self.hypotheses else None


def _parse_value(text: str, where: str) -> Optional[float]:
    if text == UNDEFINED:
        return None
    try:
        return float(text)
    except ValueError:
        raise GenerateOutputError(f"{where}: value {text!r} is neither a number nor '{UNDEFINED}'") from None


def _parse_pairs(fields: List[str], where: str) -> Dict[str, Optional[float]]:
    out: Dict[str, Optional[float]] = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise GenerateOutputError(f"{where}: expected name=value, got {item!r}")
        out[current_name(name)] = _parse_value(value, where)  # outputs of before issue 14: old names mapped
    return out


def _parse_token_pairs(fields: List[str], where: str) -> Dict[str, Optional[List[float]]]:
    out: Dict[str, Optional[List[float]]] = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise GenerateOutputError(f"{where}: expected name=v1,v2,..., got {item!r}")
        out[current_name(name)] = None if value == UNDEFINED else [
            v for v in (_parse_value(x, where) for x in value.split(",")) if v is not None
        ]
    return out


def _split_id(prefix: str, where: str) -> int:
    try:
        return int(prefix.split("-", 1)[1])
    except (IndexError, ValueError):
        raise GenerateOutputError(f"{where}: bad sentence id in {prefix!r}") from None


def read_text_output(path: str) -> Dict[int, GeneratedSentence]:
    """Sentences of a fairseq-generate text output, by sentence id."""
    sentences: Dict[int, GeneratedSentence] = {}
    h_lines: Dict[int, List[str]] = {}
    d_lines: Dict[int, List[str]] = {}

    def get(sid: int) -> GeneratedSentence:
        return sentences.setdefault(sid, GeneratedSentence(id=sid))

    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            head, _, rest = line.partition("\t")
            where = f"{path}:{lineno}"
            if head.startswith("T-"):
                get(_split_id(head, where)).reference = rest
            elif head.startswith(("D-", "H-")):
                sid = _split_id(head, where)
                get(sid)
                _, _, text = rest.partition("\t")  # drop the score
                (d_lines if head[0] == "D" else h_lines).setdefault(sid, []).append(text)
            elif head.startswith("U-"):
                fields = rest.split("\t")
                try:
                    rank = int(fields[0])
                except ValueError:
                    raise GenerateOutputError(f"{where}: U- line needs the hypothesis rank first, got {fields[0]!r}") from None
                get(_split_id(head, where)).measures[rank] = _parse_pairs(fields[1:], where)
            elif head.startswith("UT-"):
                fields = rest.split("\t")
                if fields[0] == "0":  # top-1 hypothesis only
                    get(_split_id(head, where)).token_measures = _parse_token_pairs(fields[1:], where)
            elif head.startswith("UW-"):
                fields = rest.split("\t")
                get(_split_id(head, where)).weighted = _parse_pairs(fields[1:], where)
    for sid, sent in sentences.items():
        # detokenised D- lines when present, else H- lines (rank order)
        sent.hypotheses = d_lines.get(sid) or h_lines.get(sid) or []
        sent.tokenised = (h_lines.get(sid) or d_lines.get(sid) or [None])[0]
    return sentences


def _json_value(value: object) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, str):  # "inf", "-inf", "nan"
        return float(value)
    return float(value)  # type: ignore[arg-type]


def read_jsonl_output(path: str) -> Dict[int, GeneratedSentence]:
    """Sentences of an ``--uncertainty-jsonl`` file, by sentence id."""
    sentences: Dict[int, GeneratedSentence] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(raw)
                sid = int(rec["id"])
                sent = GeneratedSentence(id=sid, reference=rec.get("reference"))
                for hyp in rec["hypotheses"]:
                    sent.hypotheses.append(hyp.get("text") or "")
                    if int(hyp["rank"]) == 0:
                        sent.tokenised = hyp.get("text") or ""
                        token = hyp.get("token") or {}
                        sent.token_measures = {
                            current_name(k): None if v is None else [_json_value(x) for x in v] for k, v in token.items()
                        } or None
                    sent.measures[int(hyp["rank"])] = {current_name(k): _json_value(v) for k, v in hyp["sequence"].items()}
                if rec.get("weighted"):
                    sent.weighted = {current_name(k): _json_value(v) for k, v in rec["weighted"].items()}
            except (KeyError, TypeError, ValueError) as err:
                raise GenerateOutputError(f"{where}: not an endist uncertainty record ({err})") from None
            sentences[sid] = sent
    return sentences


def read_generate_output(path: str, require_references: bool = False) -> List[GeneratedSentence]:
    """Sentences (sorted by id) of a generate output; checks every sentence has rank-0 measures."""
    if not os.path.isfile(path):
        raise GenerateOutputError(f"{path}: no such file")
    reader = read_jsonl_output if path.endswith(".jsonl") else read_text_output
    try:
        by_id = reader(path)
    except UnicodeDecodeError as err:
        raise GenerateOutputError(
            f"{path}: not a text file (byte {err.start}: invalid UTF-8); expected a fairseq-generate output or "
            "an --uncertainty-jsonl file"
        ) from None
    except OSError as err:
        raise GenerateOutputError(f"{path}: cannot read: {err.strerror or err}") from None
    scored = [s for s in by_id.values() if s.measures]
    if not scored:
        raise GenerateOutputError(
            f"{path}: no uncertainty lines (U-<id>) found; run fairseq-generate with "
            "--user-dir endist_seq --task translation_uncertainty --compute-uncertainty"
        )
    for sent in by_id.values():
        if 0 not in sent.measures:
            raise GenerateOutputError(f"{path}: sentence {sent.id} has no U-{sent.id} line for rank 0")
        if sent.top1 is None:
            raise GenerateOutputError(f"{path}: sentence {sent.id} has no hypothesis (D-{sent.id}/H-{sent.id} line)")
        if require_references and sent.reference is None:
            raise GenerateOutputError(f"{path}: sentence {sent.id} has no reference (T-{sent.id} line)")
        for name, value in sent.measures[0].items():
            if value is not None and math.isnan(value):
                raise GenerateOutputError(f"{path}: sentence {sent.id}: measure {name} is NaN")
    return [by_id[k] for k in sorted(by_id)]
