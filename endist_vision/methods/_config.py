"""Typed method configurations: each method declares a dataclass of its ``method_args:`` section
(in the manner of fairseq's dataclass configs) and :func:`parse_method_args` builds it once, when the
method is constructed.

Rules (every violation is one :class:`~endist_vision.errors.ConfigError` line naming the key):

* unknown keys are rejected, listing the valid ones;
* ``float`` fields take numbers (an integer is converted) and numeric strings (YAML 1.1 reads ``1e-4``
  without a dot as a string); they refuse NaN/±Inf, other strings and booleans;
* ``int`` fields take integers only, ``bool`` fields booleans only, ``str`` fields strings only;
* ``Literal[...]`` fields (the variants of a method, e.g. ``objective: kd|head``) take one of their values;
* ``X | None`` fields also take ``null``; a union of a ``Literal`` and ``bool`` takes either.

Range checks that involve one field or several fields live in the dataclass's ``__post_init__``
(raising ``ConfigError`` with the same ``method_args.KEY ...`` wording).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union

from ..errors import ConfigError

C = TypeVar("C")


@dataclasses.dataclass
class NoArgs:
    """Configuration of a method without options (``method_args`` must be empty)."""


def parse_method_args(config_class: type[C], raw: Mapping[str, Any] | None, method: str) -> C:
    """Build ``config_class`` from the ``method_args`` mapping ``raw`` of method ``method`` (see module doc)."""
    raw = dict(raw or {})
    valid = [f.name for f in dataclasses.fields(config_class)]  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ConfigError(f"method_args: unknown key(s) {unknown} for method {method!r}; valid: {sorted(valid)}")
    hints = typing.get_type_hints(config_class)
    return config_class(**{k: coerce(k, hints[k], v) for k, v in raw.items()})


def coerce(key: str, tp: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (converted int → float); ConfigError naming ``key``."""
    ok, out = _match(tp, value)
    if not ok:
        raise ConfigError(f"method_args.{key} must be {_describe(tp)}, got {value!r}")
    return out


def _members(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    return typing.get_args(tp) if origin is Union or origin is types.UnionType else (tp,)


def _match(tp: Any, value: Any) -> tuple[bool, Any]:
    for member in _members(tp):
        if member is type(None) and value is None:
            return True, None
        if typing.get_origin(member) is Literal and isinstance(value, (str, bool)) and value in typing.get_args(member):
            return True, value
        if member is bool and isinstance(value, bool):
            return True, value
        if member is int and isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if member is float and not isinstance(value, bool):
            number = _finite_float(value)
            if number is not None:
                return True, number
        if member is str and isinstance(value, str):
            return True, value
        if typing.get_origin(member) is list and typing.get_args(member) == (int,) and isinstance(value, list) \
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return True, list(value)
    return False, value


def _finite_float(value: Any) -> float | None:
    """``value`` as a finite float (numbers and numeric strings such as ``"1e-4"``), else None."""
    if not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _describe(tp: Any) -> str:
    words = []
    for member in _members(tp):
        if typing.get_origin(member) is Literal:
            choices = [str(c) for c in typing.get_args(member)]
            words.append(("one of " if len(choices) > 2 else "") + "|".join(choices))
        elif member is type(None):
            words.append("null")
        elif typing.get_origin(member) is list:
            words.append("a list of integers")
        else:
            words.append({float: "a finite number", int: "an integer", bool: "true|false", str: "a string"}[member])
    return " or ".join(words)


def config_dict(config: Any) -> dict[str, Any]:
    """The dataclass ``config`` as a plain dict (what checkpoints store as the resolved ``method_args``)."""
    return dataclasses.asdict(config)
