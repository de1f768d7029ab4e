"""shared.losses: gradcheck, gradients vs full closed forms, definitions, extremes."""

import math

import pytest
import torch

from shared.dirichlet import kl_divergence, log_likelihood, proxy_target
from shared.losses import (
    dirichlet_nll_loss,
    dropped_constant,
    ensemble_kd_loss,
    hydra_loss,
    proxy_dirichlet_loss,
)

DT = torch.float64


def _inputs(n=4, m=3, k=6, scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=DT).requires_grad_()
    t = torch.log_softmax(torch.randn(n, m, k, generator=g, dtype=DT) * scale, -1)
    return z, t


@pytest.mark.parametrize(
    "fn",
    [
        lambda z, t: ensemble_kd_loss(z, t, temperature=2.5),
        lambda z, t: dirichlet_nll_loss(z, t, temperature=3.0, model_offset=0.5),
        lambda z, t: proxy_dirichlet_loss(z, t, direction="reverse"),
        lambda z, t: proxy_dirichlet_loss(z, t, direction="forward", estimator="epkl", temperature=2.0),
        lambda z, t: hydra_loss(z.unsqueeze(1).expand(-1, 3, -1) * torch.tensor([1.0, 0.5, 2.0], dtype=DT)[:, None], t, 2.0),
    ],
    ids=["kd", "nll", "rkl", "fkl", "hydra"],
)
def test_gradcheck_float64(fn):
    z, t = _inputs()
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (z,))


@pytest.mark.parametrize("direction", ["reverse", "forward"])
def test_proxy_loss_equals_full_kl_minus_documented_constant(direction):
    z, t = _inputs(n=8, k=11)
    target = proxy_target(t, offset=1.0)
    alpha = z.exp() + 1.0
    full = kl_divergence(alpha, target.beta) if direction == "reverse" else kl_divergence(target.beta, alpha)
    ours = proxy_dirichlet_loss(z, t, direction=direction, normalize=False, reduction="none")
    torch.testing.assert_close(ours + dropped_constant(target.beta, direction), full)
    g_ours = torch.autograd.grad(ours.sum(), z)[0]
    g_full = torch.autograd.grad(full.sum(), z)[0]
    torch.testing.assert_close(g_ours, g_full)
    normalised = proxy_dirichlet_loss(z, t, direction=direction, reduction="none")
    torch.testing.assert_close(normalised, ours / target.precision.clamp_min(1.0))


def test_rkl_gradient_matches_paper_eq16():
    z, t = _inputs(n=3, k=5)
    target = proxy_target(t, offset=1.0)
    loss = proxy_dirichlet_loss(z, None, target=target, normalize=False, reduction="sum")
    (g,) = torch.autograd.grad(loss, z)
    a = z.detach().exp() + 1
    b = target.beta
    a0, b0 = a.sum(-1, keepdim=True), b.sum(-1, keepdim=True)
    eq16 = ((a - b) * torch.polygamma(1, a) - (a0 - b0) * torch.polygamma(1, a0)) * z.detach().exp()
    torch.testing.assert_close(g, eq16)


def test_kd_is_tempered_kl_times_t_squared():
    z, t = _inputs()
    temp = 2.5
    pbar = torch.softmax(t / temp, -1).mean(1)
    q = torch.log_softmax(z / temp, -1)
    expected = (pbar * (pbar.log() - q)).sum(-1) * temp**2
    torch.testing.assert_close(ensemble_kd_loss(z, t, temp, reduction="none"), expected)


def test_dirichlet_nll_is_mean_member_negative_log_density():
    z, t = _inputs(m=4)
    gamma, temp = 1e-3, 2.0
    k = z.shape[-1]
    pis = (1 - gamma) * torch.softmax(t / temp, -1) + gamma / k
    alpha = (z / temp).exp()
    expected = -log_likelihood(alpha.unsqueeze(1).expand_as(pis), pis.log()).mean(1)
    torch.testing.assert_close(dirichlet_nll_loss(z, t, temp, gamma, reduction="none"), expected)


def test_hydra_loss_is_mean_of_per_head_kd():
    z, t = _inputs(m=3)
    heads = torch.stack([z, 2 * z, -z], 1)
    per_head = [ensemble_kd_loss(heads[:, h], t[:, h : h + 1], 2.0, reduction="none") for h in range(3)]
    torch.testing.assert_close(hydra_loss(heads, t, 2.0, reduction="none"), torch.stack(per_head, 1).mean(1))


def test_mask_and_reductions():
    z, t = _inputs(n=6)
    mask = torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool)
    per = proxy_dirichlet_loss(z, t, reduction="none")
    torch.testing.assert_close(proxy_dirichlet_loss(z, t, mask=mask, reduction="sum"), per[mask].sum())
    torch.testing.assert_close(proxy_dirichlet_loss(z, t, mask=mask, reduction="mean"), per[mask].mean())
    (g,) = torch.autograd.grad(proxy_dirichlet_loss(z, t, mask=mask, reduction="sum"), z)
    assert torch.all(g[~mask] == 0)
    with pytest.raises(ValueError, match="reduction"):
        ensemble_kd_loss(z, t, reduction="avg")
    with pytest.raises(ValueError, match=r"\[\.\.\., M, K\]"):
        dirichlet_nll_loss(z, t[:, 0])


def _one_hot_teachers(n, m, k):
    lp = torch.full((n, m, k), -math.inf)
    lp[torch.arange(n)[:, None], torch.arange(m)[None, :], torch.randint(0, k, (n, m))] = 0.0
    return lp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "loss",
    [
        lambda z, t: ensemble_kd_loss(z, t, 2.5),
        lambda z, t: dirichlet_nll_loss(z, t, 10.0),
        lambda z, t: proxy_dirichlet_loss(z, t),
        lambda z, t: proxy_dirichlet_loss(z, t, direction="forward"),
        lambda z, t: hydra_loss(z.unsqueeze(1).expand(-1, t.shape[1], -1), t, 2.0),
    ],
    ids=["kd", "nll", "rkl", "fkl", "hydra"],
)
def test_extreme_inputs_finite(loss, dtype):
    torch.manual_seed(0)
    n, m, k = 6, 3, 40_000
    z = (torch.randint(0, 2, (n, k)).float() * 2e4 - 1e4).to(dtype).requires_grad_()
    for teachers in (_one_hot_teachers(n, m, k).to(dtype), torch.log_softmax(torch.randn(n, m, k) * 1e4, -1).to(dtype)):
        value = loss(z, teachers)
        (g,) = torch.autograd.grad(value, z)
        assert torch.isfinite(value).all(), value
        assert torch.isfinite(g.float()).all()
