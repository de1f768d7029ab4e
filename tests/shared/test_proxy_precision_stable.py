"""β̂₀ of near-unanimous ensembles is accurate in float32 up to MAX_PRECISION (issue 14.5).

Reference: the textbook formulas of [Proxy] eq. 17 evaluated in float64 on the same float32
member log-probabilities (so the only difference is the arithmetic of the reduction).
"""

import math

import pytest
import torch

from shared.dirichlet import MAX_PRECISION, member_divergence, proxy_target

V, M = 40_000, 5


def _float64_precisions(lp32: torch.Tensor) -> tuple[float, float]:
    lp = lp32.double()
    p = lp.exp()
    mean = p.mean(0)
    rmi = (mean * (mean.log() - lp)).sum(-1).mean()  # (1/M) Σ_m KL(p̄‖p_m)
    epkl = torch.stack([(p[m] * (lp[m] - lp[n])).sum() for m in range(M) for n in range(M)]).mean()
    return float((V - 1) / (2 * rmi)), float((V - 1) / epkl)


@pytest.mark.parametrize("spread, scale", [(0.1, 5e6), (0.01, 5e8), (0.0032, 5e9)])
def test_float32_precision_matches_float64(spread, scale):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(V, generator=g, dtype=torch.float64) * 3
    lp32 = torch.log_softmax(base + spread * torch.randn(M, V, generator=g, dtype=torch.float64), -1).float()
    ref_mkl, ref_epkl = _float64_precisions(lp32)
    assert scale / 3 < ref_mkl < min(scale * 3, MAX_PRECISION)  # the regime the test is about
    for estimator, ref in (("mkl", ref_mkl), ("epkl", ref_epkl)):
        got = float(proxy_target(lp32.unsqueeze(0), estimator=estimator).precision)
        assert abs(got / ref - 1) < 1e-4, (estimator, got, ref)


def test_member_divergence_float64_and_edge_cases():
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(4, 3, 7, generator=g, dtype=torch.float64) * 2, -1)
    p = lp.exp()
    mean = p.mean(-2, keepdim=True)
    rmi = (mean * (mean.log() - lp)).sum(-1).mean(-1)
    epkl = (p.unsqueeze(-2) * (lp.unsqueeze(-2) - lp.unsqueeze(-3))).sum(-1).mean((-1, -2))
    torch.testing.assert_close(member_divergence(lp, "mkl"), 2 * rmi, rtol=1e-12, atol=0)
    torch.testing.assert_close(member_divergence(lp, "epkl"), epkl, rtol=1e-12, atol=0)
    # identical one-hot members: 0; one-hot members that disagree: +inf (β̂₀ = 0)
    same = torch.tensor([[0.0, -math.inf, -math.inf]] * 2)
    other = torch.tensor([[0.0, -math.inf, -math.inf], [-math.inf, 0.0, -math.inf]])
    for estimator in ("mkl", "epkl"):
        assert float(member_divergence(same, estimator)) == 0.0
        d = float(member_divergence(other, estimator))
        assert not d < 1e30  # +inf or NaN (inf − inf); proxy_target reads both as infinite
        flat = proxy_target(other, estimator=estimator)
        assert float(flat.precision) < 1e-30 and torch.equal(flat.beta, torch.ones(3))  # β̂₀ ≈ 0: flat target
        assert float(proxy_target(same, estimator=estimator).precision) == MAX_PRECISION
