"""shared.schedules and shared.plots."""

import os

import numpy as np
import pytest

from shared.plots import plot_rejection_curves, plot_uncertainty_histograms
from shared.schedules import TemperatureAnnealing


def test_annealing_hold_decay_constant():
    s = TemperatureAnnealing(10.0, 1.0, hold_steps=5, decay_steps=10)
    assert [s(i) for i in (0, 5)] == [10.0, 10.0]
    assert s(10) == pytest.approx(5.5)
    assert s(15) == 1.0 and s(100) == 1.0
    values = [s(i) for i in range(20)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_annealing_state_dict_resume():
    a = TemperatureAnnealing(10.0, 1.0, 3, 6)
    for _ in range(5):
        a.step()
    b = TemperatureAnnealing(2.0, 1.0, 0, 0)
    b.load_state_dict(a.state_dict())
    assert [b.step() for _ in range(5)] == [a.step() for _ in range(5)]
    with pytest.raises(ValueError):
        TemperatureAnnealing(-1.0)


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(0)
    err = (rng.random(200) < 0.3).astype(float)
    p1 = plot_rejection_curves(err, {"entropy": err + rng.random(200), "random": rng.random(200)}, str(tmp_path / "r.png"))
    p2 = plot_uncertainty_histograms(rng.random(100), {"ood": rng.random(100) + 1}, str(tmp_path / "h.png"), "MI")
    for p in (p1, p2):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
