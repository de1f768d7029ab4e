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

import os

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


def _install() -> None:
    hooks = _hooks()
    if not hooks:
        return
    import functools

    import endist_vision.trainer as trainer

    original = trainer.train

    @functools.wraps(original)
    def train(cfg, run_dir, resume=False, *, on_step_end=()):  # noqa: ANN001, ANN202
        return original(cfg, run_dir, resume, on_step_end=[*on_step_end, *hooks])

    trainer.train = train


_install()
