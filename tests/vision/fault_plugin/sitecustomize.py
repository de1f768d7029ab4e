"""Test-only fault injection for ``endist-vision`` processes launched by the tests (not part of the package).

``tests/vision/fault_injection.py::fault_env`` puts this folder first on ``PYTHONPATH``, so Python imports this
module at start-up (``site``). Driven by environment variables, it passes ``on_step_end`` hooks to
``endist_vision.trainer.train`` (the trainer's public hook argument):

* ``ENDIST_TEST_KILL_AFTER_STEP=N``: after optimiser step N the process ends like a SIGKILL
  (``os._exit(137)``: no cleanup, no final checkpoint) — every rank of a torchrun job;
* ``ENDIST_TEST_STALL_AFTER_STEP=RANK:N``: after step N, rank RANK blocks forever (a hung rank; the others
  must give up after ``train.dist_timeout_s``).
"""

from __future__ import annotations

import importlib.abc
import os
import sys

KILL_ENV = "ENDIST_TEST_KILL_AFTER_STEP"
STALL_ENV = "ENDIST_TEST_STALL_AFTER_STEP"


def _hooks() -> list:
    hooks = []
    kill = os.environ.get(KILL_ENV)
    if kill:
        def kill_after(ev, n=int(kill)):  # noqa: ANN001
            if ev.step == n:
                os._exit(137)

        hooks.append(kill_after)
    stall = os.environ.get(STALL_ENV)
    if stall:
        rank, n = (int(v) for v in stall.split(":"))

        def stall_after(ev):  # noqa: ANN001
            if ev.step == n and ev.rank == rank:
                import threading

                threading.Event().wait()  # blocks until the launcher kills this process

        hooks.append(stall_after)
    return hooks


def _wrap(trainer) -> None:  # noqa: ANN001
    """Pass the hooks to every ``trainer.train`` call (the CLI looks ``train`` up at call time)."""
    import functools

    hooks, original = _hooks(), trainer.train

    @functools.wraps(original)
    def train(cfg, run_dir, resume=False, *, on_step_end=()):  # noqa: ANN001, ANN202
        return original(cfg, run_dir, resume, on_step_end=[*on_step_end, *hooks])

    trainer.train = train


class _AfterTrainerImport(importlib.abc.MetaPathFinder):
    """Wraps ``endist_vision.trainer`` once it is imported, so processes that never train (the torchrun
    launcher) do not import the package."""

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name != "endist_vision.trainer":
            return None
        spec = next((s for f in sys.meta_path if f is not self and hasattr(f, "find_spec")
                     for s in [f.find_spec(name, path, target)] if s is not None), None)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_wrap(module):  # noqa: ANN001, ANN202
            exec_module(module)
            _wrap(module)

        spec.loader.exec_module = exec_and_wrap
        return spec


if _hooks():
    sys.meta_path.insert(0, _AfterTrainerImport())
