"""Recipe tests: the longest smoke run ([Proxy] ImageNet + WMT, ~4 min on 2 cores) is collected first, so that
with `pytest -n 2` one worker runs it while the other runs the remaining recipes, instead of starting it last."""

LONGEST_FIRST = ("test_recipes_proxy.py::test_smoke_both_recipes",)


def pytest_collection_modifyitems(session, config, items):  # noqa: ARG001
    items.sort(key=lambda it: not it.nodeid.endswith(LONGEST_FIRST))
