"""shared._special: the joint float32 lnΓ/ψ/ψ' against scipy over the whole range the losses use."""

import numpy as np
import torch
from scipy.special import digamma, gammaln, polygamma

import shared.losses as losses
from shared._special import gamma_terms


def test_gamma_terms_match_scipy():
    x = torch.cat([torch.logspace(-18, 13, 50_000), torch.rand(50_000) * 10 + 1e-3]).float()
    lg, dg, tg = gamma_terms(x)
    xd = x.double().numpy()
    for ours, ref, tol in ((lg, gammaln(xd), 1e-5), (dg, digamma(xd), 2e-6), (tg, polygamma(1, xd), 2e-6)):
        err = np.abs(ours.double().numpy() - ref) / np.maximum(np.abs(ref), 1.0)
        assert err.max() < tol, (err.max(), xd[err.argmax()])


def test_fast_and_exact_special_functions_give_the_same_loss_and_gradient(monkeypatch):
    torch.manual_seed(0)
    z = (torch.randn(37, 300) * 3).requires_grad_()
    t = torch.log_softmax(torch.randn(37, 4, 300) * 2, -1)
    results = []
    for fast in (True, False):
        monkeypatch.setattr(losses, "USE_FAST_SPECIAL", fast)
        monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 1000)  # several chunks, a ragged last one
        value = losses.proxy_dirichlet_loss(z, t, reduction="sum")
        (g,) = torch.autograd.grad(value, z)
        results.append((value, g))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)
