"""The one registry helper behind models, methods, data sets and shift sets."""

import pytest

from endist_vision.registry import Registry


def _factory_a() -> int:
    return 1


def _factory_b() -> int:
    return 2


def test_duplicate_name_of_a_different_object_raises_naming_both_modules() -> None:
    reg: Registry = Registry("widget")
    reg.register("w")(_factory_a)
    with pytest.raises(ValueError, match=r"widget 'w' is already registered by .*test_registry"):
        reg.register("w")(_factory_b)
    assert reg.get("w") is _factory_a


def test_same_object_may_register_twice_and_lookup_lists_names() -> None:
    reg: Registry = Registry("widget")
    reg.register("w")(_factory_a)
    reg.register("w")(_factory_a)
    reg.register("v")(_factory_b)
    assert reg.names() == ["v", "w"] and "w" in reg and len(reg) == 2
    with pytest.raises(KeyError, match="unknown widget 'x'; available: v, w"):
        reg.get("x")
    with pytest.raises(ValueError, match="non-empty"):
        reg.register("")
