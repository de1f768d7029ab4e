"""shared.uncertainty against closed forms, scipy and Monte-Carlo estimates."""

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma
from scipy.stats import dirichlet as scipy_dirichlet

from shared.uncertainty import UNCERTAINTY_KEYS, alphas_from_logits, dirichlet_uncertainty, ensemble_uncertainty


def _random_ensemble(shape, m, k, scale=2.0, dtype=torch.float64):
    return torch.log_softmax(torch.randn(*shape, m, k, dtype=dtype) * scale, dim=-1)


def test_ensemble_measures_match_direct_definitions():
    lp = _random_ensemble((4, 3), m=5, k=7)
    out = ensemble_uncertainty(lp)
    assert set(out) == set(UNCERTAINTY_KEYS)
    p = lp.exp().numpy()
    pbar = p.mean(-2)
    total = -(pbar * np.log(pbar)).sum(-1)
    data = -(p * np.log(p)).sum(-1).mean(-1)
    # Explicit double loop over ordered member pairs (m = n included).
    m = p.shape[-2]
    epkl = np.zeros(p.shape[:-2])
    for i in range(m):
        for j in range(m):
            epkl += (p[..., i, :] * (np.log(p[..., i, :]) - np.log(p[..., j, :]))).sum(-1)
    epkl /= m * m
    rmi = np.mean([(pbar * (np.log(pbar) - np.log(p[..., i, :]))).sum(-1) for i in range(m)], axis=0)
    np.testing.assert_allclose(out["total"], total, rtol=1e-10)
    np.testing.assert_allclose(out["data"], data, rtol=1e-10)
    np.testing.assert_allclose(out["mutual_information"], total - data, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["epkl"], epkl, rtol=1e-9)
    np.testing.assert_allclose(out["rmi"], rmi, rtol=1e-9)
    np.testing.assert_allclose(out["confidence"], pbar.max(-1), rtol=1e-12)


def test_ensemble_identity_and_orderings_on_random_inputs():
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        m, k = int(torch.randint(2, 8, (1,), generator=g)), int(torch.randint(2, 30, (1,), generator=g))
        scale = float(torch.rand((), generator=g) * 6)
        lp = torch.log_softmax(torch.randn(16, m, k, generator=g, dtype=torch.float64) * scale, -1)
        out = ensemble_uncertainty(lp)
        assert torch.all(out["mutual_information"] >= -1e-12)
        assert torch.all(out["rmi"] >= -1e-12)
        assert torch.all(out["epkl"] >= out["mutual_information"] - 1e-12)
        torch.testing.assert_close(out["epkl"], out["mutual_information"] + out["rmi"], rtol=1e-9, atol=1e-10)
        assert torch.all(out["total"] <= math.log(k) + 1e-9)


def test_identical_members_have_zero_knowledge_uncertainty():
    one = torch.log_softmax(torch.randn(10, 1, 6, dtype=torch.float64), -1)
    out = ensemble_uncertainty(one.expand(10, 4, 6))
    for key in ("mutual_information", "epkl", "rmi"):
        assert out[key].abs().max() < 1e-12
    torch.testing.assert_close(out["total"], out["data"])


def test_dirichlet_closed_forms_match_scipy():
    alpha = np.array([0.7, 2.0, 5.5, 1.3])
    out = dirichlet_uncertainty(torch.tensor(alpha))
    a0 = alpha.sum()
    p = alpha / a0
    expected_data = -(p * (digamma(alpha + 1) - digamma(a0 + 1))).sum()
    assert math.isclose(float(out["data"]), expected_data, rel_tol=1e-12)
    assert math.isclose(float(out["total"]), -(p * np.log(p)).sum(), rel_tol=1e-12)
    assert math.isclose(float(out["epkl"]), 3 / a0, rel_tol=1e-12)
    # Expected entropy by Monte Carlo with scipy's sampler.
    samples = scipy_dirichlet(alpha).rvs(size=200_000, random_state=0)
    mc_data = -(samples * np.log(samples)).sum(1).mean()
    assert abs(float(out["data"]) - mc_data) < 5e-3


@pytest.mark.parametrize("alpha", [[1.0, 1.0, 1.0], [0.5, 3.0, 8.0, 2.0, 1.5], [20.0, 0.3, 0.3]])
def test_dirichlet_matches_ensemble_of_samples(alpha):
    """dirichlet_uncertainty(α) vs ensemble_uncertainty on 40k members π ~ Dir(α)."""
    torch.manual_seed(0)
    a = torch.tensor(alpha, dtype=torch.float64)
    samples = torch.distributions.Dirichlet(a).sample((40_000,)).clamp_min(1e-300)
    closed = dirichlet_uncertainty(a)
    mc = ensemble_uncertainty(samples.log().unsqueeze(0))
    for key in UNCERTAINTY_KEYS:
        c, e = float(closed[key]), float(mc[key][0])
        assert abs(c - e) <= 0.03 * abs(c) + 0.01, (key, c, e)
    assert float(closed["mutual_information"]) > 0


def test_dirichlet_mutual_information_nonnegative_over_wide_range():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2000, 10, generator=g, dtype=torch.float64) * 4
    out = dirichlet_uncertainty(alphas_from_logits(logits))
    assert torch.all(out["mutual_information"] >= 0)
    assert torch.all(out["epkl"] >= out["mutual_information"])
    assert torch.all(out["rmi"] >= 0)


def test_more_concentrated_dirichlet_has_less_knowledge_uncertainty():
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    mis = [float(dirichlet_uncertainty(p * a0)["mutual_information"]) for a0 in (1.0, 10.0, 100.0, 1000.0)]
    assert mis == sorted(mis, reverse=True)
    assert mis[-1] < 1.5e-3


def test_alphas_from_logits_overflow_safe_and_offset():
    z = torch.tensor([[-1e4, 0.0, 1e4]])
    a = alphas_from_logits(z, offset=1.0)
    assert torch.isfinite(a).all() and a.dtype == torch.float32
    assert float(a[0, 1]) == pytest.approx(2.0)
    a16 = alphas_from_logits(z.half())
    assert a16.dtype == torch.float32 and torch.isfinite(a16).all()
    with pytest.raises(ValueError, match="parametrization"):
        alphas_from_logits(z, parametrization="relu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_measures_finite_for_extreme_and_half_inputs(dtype):
    k = 40_000
    logits = (torch.randint(0, 2, (3, k)).float() * 2e4 - 1e4).to(dtype)
    out = dirichlet_uncertainty(alphas_from_logits(logits, offset=1.0))
    assert all(torch.isfinite(v).all() for v in out.values())
    assert torch.all(out["mutual_information"] >= 0)
    lp = torch.log_softmax(torch.randn(3, 4, k) * 1e4, -1).to(dtype)
    out = ensemble_uncertainty(lp)
    assert out["total"].dtype == torch.float32
    for key in ("total", "data", "mutual_information", "confidence"):
        assert torch.isfinite(out[key]).all(), key


def test_dirichlet_mean_log_probs_is_log_of_alpha_over_alpha0() -> None:
    """ln p̂ against α/α₀ computed directly in float64 (α = exp(z) + c), and log_softmax for c = 0."""
    from shared.uncertainty import dirichlet_mean_log_probs

    z = torch.randn(6, 7, dtype=torch.float64) * 5
    for c in (0.0, 1.0, 0.3):
        alpha = z.exp() + c
        torch.testing.assert_close(dirichlet_mean_log_probs(z, c).exp(), alpha / alpha.sum(-1, keepdim=True))
    extreme = torch.tensor([[-1e4, 0.0, 1e4]])
    assert torch.isfinite(dirichlet_mean_log_probs(extreme, 1.0)).all()


def test_float32_measures_where_the_mixture_underflows_match_float64_logsumexp_forms():
    """Classes that every member gives ~e^-150 (0 in float32) and classes some members give exactly 0: p̄ is
    taken from the members' probabilities (no logsumexp), so ln p̄ is −inf where float32 p̄ underflows. The
    measures must stay finite where defined and equal the float64 forms built on scipy's logsumexp."""
    from scipy.special import logsumexp

    from shared.uncertainty import weighted_ensemble_uncertainty

    g = torch.Generator().manual_seed(3)
    m, k = 3, 12
    logits = torch.randn(40, m, k, generator=g, dtype=torch.float64) * 3
    logits[..., :4] = -150.0  # e^-150 underflows in float32 for every member
    logits[:20, 0, 4] = -math.inf  # member 0 gives class 4 probability 0 in half the rows
    lp64 = torch.log_softmax(logits, -1)
    log_w64 = torch.log_softmax(torch.randn(40, m, generator=g, dtype=torch.float64), -1)
    lp = lp64.float()
    for weights in (None, log_w64):
        if weights is None:
            out = ensemble_uncertainty(lp)
            w = np.full((40, m), 1.0 / m)
        else:
            out = weighted_ensemble_uncertainty(lp, weights.float())
            w = weights.exp().numpy()
        lp_np = lp64.numpy()
        log_mix = logsumexp(lp_np + np.log(w)[..., None], axis=-2)
        mix = np.exp(log_mix)
        total = -(mix * log_mix).sum(-1)
        p = np.exp(lp_np)
        data = -(w * np.where(p > 0, p * np.where(p > 0, lp_np, 0.0), 0.0).sum(-1)).sum(-1)
        np.testing.assert_allclose(out["total"].numpy(), total, rtol=2e-5)
        np.testing.assert_allclose(out["data"].numpy(), data, rtol=2e-5)
        np.testing.assert_allclose(out["mutual_information"].numpy(), total - data, rtol=1e-3, atol=2e-5)
        np.testing.assert_allclose(out["confidence"].numpy(), mix.max(-1), rtol=1e-6)
        for key in ("total", "data", "mutual_information", "confidence"):
            assert torch.isfinite(out[key]).all(), key
        # a member with probability 0 where the mixture has mass: epkl and rmi +inf (rows < 20); elsewhere their
        # float64 forms epkl = −data − Σ_k P_k Σ_n w_n ln p_nk, rmi = −total − Σ_k P_k Σ_m w_m ln p_mk
        assert torch.isinf(out["epkl"][:20]).all() and torch.isinf(out["rmi"][:20]).all()
        cross = (mix * (w[..., None] * lp_np).sum(-2)).sum(-1)[20:]
        np.testing.assert_allclose(out["epkl"][20:].numpy(), (-data[20:] - cross), rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(out["rmi"][20:].numpy(), (-total[20:] - cross), rtol=1e-4, atol=2e-5)
    # member 0 (the one with zero probabilities) at weight 0: it drops out, nothing is NaN or infinite
    log_w0 = log_w64.clone()
    log_w0[:, 0] = -math.inf
    log_w0 = torch.log_softmax(log_w0, -1)
    out = weighted_ensemble_uncertainty(lp, log_w0.float())
    rest = weighted_ensemble_uncertainty(lp[:, 1:], log_w0[:, 1:].float())
    for key in ("total", "data", "mutual_information", "epkl", "rmi", "confidence"):
        assert torch.isfinite(out[key]).all(), key
        torch.testing.assert_close(out[key], rest[key], rtol=1e-5, atol=1e-6)

