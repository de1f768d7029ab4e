"""shared.dirichlet: closed forms vs scipy / Monte Carlo, Proxy target recovery."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import dirichlet as scipy_dirichlet

from shared.dirichlet import entropy, kl_divergence, log_likelihood, proxy_target


def test_log_likelihood_and_entropy_match_scipy():
    alpha = np.array([0.8, 2.5, 4.0])
    pis = scipy_dirichlet(alpha).rvs(size=5, random_state=1)
    ours = log_likelihood(torch.tensor(alpha).expand(5, 3), torch.tensor(np.log(pis)))
    np.testing.assert_allclose(ours.numpy(), [scipy_dirichlet(alpha).logpdf(p) for p in pis], rtol=1e-10)
    assert math.isclose(float(entropy(torch.tensor(alpha))), scipy_dirichlet(alpha).entropy(), rel_tol=1e-10)


def test_kl_divergence_matches_monte_carlo():
    a = np.array([2.0, 0.7, 3.5, 1.2])
    b = np.array([1.0, 1.5, 2.0, 4.0])
    x = scipy_dirichlet(a).rvs(size=400_000, random_state=0)
    mc = (scipy_dirichlet(a).logpdf(x.T) - scipy_dirichlet(b).logpdf(x.T)).mean()
    closed = float(kl_divergence(torch.tensor(a), torch.tensor(b)))
    assert abs(closed - mc) < 0.02 * abs(closed) + 5e-3
    assert float(kl_divergence(torch.tensor(a), torch.tensor(a))) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("estimator", ["mkl", "epkl"])
def test_proxy_target_recovers_known_precision(estimator):
    """An ensemble drawn from Dir(p·β₀) with many members → β̂₀ ≈ β₀, p̄ ≈ p."""
    torch.manual_seed(0)
    k, beta0, m = 10, 200.0, 4000
    p = torch.softmax(torch.randn(k, dtype=torch.float64), -1)
    members = torch.distributions.Dirichlet(p * beta0).sample((m,))  # [M, K]
    target = proxy_target(members.log().unsqueeze(0), estimator=estimator, offset=0.0)
    # Minka's estimate is a Stirling approximation: within ~10%; EPKL is exact in expectation.
    tol = 0.1 if estimator == "mkl" else 0.05
    assert abs(float(target.precision[0]) - beta0) < tol * beta0
    torch.testing.assert_close(target.beta[0] / target.beta[0].sum(), p, atol=5e-3, rtol=0)
    with_offset = proxy_target(members.log().unsqueeze(0), estimator=estimator, offset=1.0)
    torch.testing.assert_close(with_offset.beta, target.beta + 1.0)


def test_proxy_target_formula_small_case():
    lp = torch.log(torch.tensor([[[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]]], dtype=torch.float64))
    p = lp.exp()
    pbar = p.mean(1)
    mkl = np.mean([(pbar * (pbar.log() - p[:, i].log())).sum().item() for i in range(2)])
    t = proxy_target(lp, "mkl", offset=1.0)
    assert float(t.precision) == pytest.approx(2 / (2 * mkl), rel=1e-10)
    torch.testing.assert_close(t.beta, pbar * t.precision + 1.0)


def test_proxy_target_one_hot_teachers_finite():
    agree = torch.full((1, 3, 5), -math.inf)
    agree[..., 2] = 0.0
    t = proxy_target(agree)
    assert torch.isfinite(t.beta).all() and torch.isfinite(t.precision).all()
    disagree = torch.full((1, 2, 5), -math.inf)
    disagree[0, 0, 1] = 0.0
    disagree[0, 1, 3] = 0.0
    t2 = proxy_target(disagree)
    assert torch.isfinite(t2.beta).all()
    torch.testing.assert_close(t2.beta, torch.ones(1, 5))  # infinite disagreement → flat target
