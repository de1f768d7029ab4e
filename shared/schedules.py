"""Temperature schedules for distillation ([EnD2] §3.1 and App. A.2)."""

from __future__ import annotations

import math
from typing import Any, Dict


class TemperatureAnnealing:
    """Hold, then linear decay, then constant ([EnD2] App. A.2)::

        T(s) = initial                                         for s ≤ hold_steps
        T(s) = initial + (final − initial)·(s − hold)/decay    for hold < s < hold + decay
        T(s) = final                                           for s ≥ hold + decay

    [EnD2] holds T₀ = 10 for the first half-cycle of the one-cycle schedule and decays
    linearly to 1 over the second half-cycle. ``s`` is whatever unit the caller steps
    (update number or epoch). Callable on a step; ``step()`` advances an internal
    counter; ``state_dict``/``load_state_dict`` make it resume exactly.
    """

    def __init__(self, initial: float, final: float = 1.0, hold_steps: int = 0, decay_steps: int = 0) -> None:
        for name, value in (("initial", initial), ("final", final)):
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise ValueError(f"temperature {name} must be a finite number > 0, got {value!r}")
        if hold_steps < 0 or decay_steps < 0:
            raise ValueError(f"hold_steps and decay_steps must be >= 0, got {hold_steps}, {decay_steps}")
        self.initial = float(initial)
        self.final = float(final)
        self.hold_steps = int(hold_steps)
        self.decay_steps = int(decay_steps)
        self.last_step = 0

    def __call__(self, step: int | float | None = None) -> float:
        s = self.last_step if step is None else step
        if s <= self.hold_steps:
            return self.initial
        if self.decay_steps == 0 or s >= self.hold_steps + self.decay_steps:
            return self.final
        frac = (s - self.hold_steps) / self.decay_steps
        return self.initial + (self.final - self.initial) * frac

    def step(self) -> float:
        """Advance one step and return the new temperature."""
        self.last_step += 1
        return self()

    def state_dict(self) -> Dict[str, Any]:
        return {
            "initial": self.initial,
            "final": self.final,
            "hold_steps": self.hold_steps,
            "decay_steps": self.decay_steps,
            "last_step": self.last_step,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for key in ("initial", "final", "hold_steps", "decay_steps", "last_step"):
            setattr(self, key, type(getattr(self, key))(state[key]))

    def __repr__(self) -> str:
        return (
            f"TemperatureAnnealing(initial={self.initial}, final={self.final}, "
            f"hold_steps={self.hold_steps}, decay_steps={self.decay_steps})"
        )
