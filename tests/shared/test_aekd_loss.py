"""AE-KD teacher weights: capped-simplex projection, min-norm QP against scipy, loss gradients (issue #6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from shared.losses import (
    aekd_loss,
    aekd_weights,
    project_capped_simplex,
    solve_min_norm_qp,
    teacher_gradients,
)


def _scipy_qp(quad: np.ndarray, lin: np.ndarray, cap: float) -> np.ndarray:
    """min ½ωᵀQω + cᵀω on {Σω = 1, 0 ≤ ω ≤ cap} with SLSQP (reference solver)."""
    m = len(lin)
    res = minimize(lambda w: 0.5 * w @ quad @ w + lin @ w, np.full(m, 1.0 / m), jac=lambda w: quad @ w + lin,
                   bounds=[(0.0, cap)] * m, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                   method="SLSQP", options={"ftol": 1e-15, "maxiter": 500})
    assert res.success, res.message
    return res.x


@pytest.mark.parametrize("cap", [0.25, 0.4, 1.0])
def test_projection_matches_scipy(cap: float) -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        v = rng.normal(size=5) * 2
        ref = _scipy_qp(np.eye(5), -v, cap)  # ½‖ω − v‖² up to a constant
        w = project_capped_simplex(torch.tensor(v), cap).numpy()
        assert abs(w.sum() - 1) < 1e-12 and w.min() >= 0.0 and w.max() <= cap
        np.testing.assert_allclose(w, ref, atol=1e-6)


def test_min_norm_qp_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    for m, cap in [(3, 0.6), (5, 0.6), (5, 0.3), (8, 0.6)]:
        a = rng.normal(size=(m, 12))
        gram = a @ a.T
        w = solve_min_norm_qp(torch.tensor(gram), cap).numpy()
        ref = _scipy_qp(gram, np.zeros(m), cap)
        assert abs(w.sum() - 1) < 1e-10 and w.min() >= -1e-15 and w.max() <= cap + 1e-12
        assert 0.5 * w @ gram @ w <= 0.5 * ref @ gram @ ref + 1e-8


def test_weights_satisfy_constraints_and_favour_the_agreeing_teacher() -> None:
    torch.manual_seed(0)
    b, m, k, cap = 32, 4, 10, 0.6
    student = torch.randn(b, k)
    teachers = torch.log_softmax(torch.randn(b, m, k) * 2, -1)
    w = aekd_weights(student, teachers, temperature=2.0, cap=cap)
    assert w.shape == (m,)
    assert abs(float(w.sum()) - 1) < 1e-6 and float(w.min()) >= 0 and float(w.max()) <= cap + 1e-6
    # a teacher equal to the student has zero gradient: the min-norm point puts the cap C on it
    teachers[:, 2] = torch.log_softmax(student, -1)
    w = aekd_weights(student, teachers, temperature=2.0, cap=cap)
    assert abs(float(w[2]) - cap) < 1e-5
    # C = 1/M leaves no freedom: plain ensemble KD weights
    w = aekd_weights(student, teachers, temperature=2.0, cap=1 / m)
    torch.testing.assert_close(w, torch.full((m,), 1 / m))


def test_teacher_gradients_are_the_kd_logit_gradients() -> None:
    torch.manual_seed(0)
    z = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    lp = torch.log_softmax(torch.randn(3, 2, 5, dtype=torch.float64), -1)
    t = 3.0
    g = teacher_gradients(z, lp, t)
    for m in range(2):
        p = torch.softmax(lp[:, m] / t, -1)
        ce = -(p * torch.log_softmax(z / t, -1)).sum() * t**2  # τ² H[p_m^τ, q^τ], summed over the batch
        (auto,) = torch.autograd.grad(ce, z)
        torch.testing.assert_close(g[:, m], auto)


def test_aekd_loss_gradient_is_the_weighted_teacher_gradient() -> None:
    torch.manual_seed(0)
    b, k, t = 6, 5, 2.0
    z = torch.randn(b, k, dtype=torch.float64, requires_grad=True)
    lp = torch.log_softmax(torch.randn(b, 3, k, dtype=torch.float64) * 2, -1)
    loss, w = aekd_loss(z, lp, temperature=t, cap=0.6)
    (grad,) = torch.autograd.grad(loss, z)
    expected = (w.double()[None, :, None] * teacher_gradients(z, lp, t)).sum(1) / b  # batch mean
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-8)


def test_infeasible_cap_is_rejected() -> None:
    with pytest.raises(ValueError, match="C=0.2 is infeasible for 4 teachers"):
        aekd_weights(torch.zeros(2, 3), torch.log_softmax(torch.zeros(2, 4, 3), -1), cap=0.2)
