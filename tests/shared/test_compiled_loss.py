"""The compiled CPU path of the Proxy loss (shared._compiled) against float64 closed forms (issue 16).

The threshold ``MIN_ELEMENTS`` is lowered so that small batches take the compiled path; each test
checks that it really did (the compiled function is in the module's cache) and compares value and
gradient with the textbook formulas of [Proxy] eq. 13–17 evaluated in float64 with autograd.
"""

import logging
import math

import pytest
import torch

import shared._compiled as C
import shared.losses as losses
from shared._special import expm1_accurate, log1p_accurate
from shared.dirichlet import _target_chunk, proxy_target

from proxy_closed_form import float64_proxy_loss  # this folder (pytest puts it on sys.path)

N, M, V = 37, 4, 300


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.setattr(C, "MIN_ELEMENTS", 1000)
    monkeypatch.setattr(C, "CHUNK_ELEMENTS", 10 * V)  # 10 rows per chunk: 4 chunks, a padded last one
    monkeypatch.setattr(C, "_failed", False)
    monkeypatch.delenv(C.ENV_SWITCH, raising=False)
    return C


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, V, generator=g) * 3
    lp = torch.log_softmax(torch.randn(N, M, V, generator=g) * 2 + torch.randn(N, 1, V, generator=g) * 3, -1)
    return z, lp


def test_accurate_expm1_and_log1p_match_float64():
    x = torch.cat([-torch.logspace(-30, 2.5, 100_000), torch.logspace(-30, 1, 1000), torch.tensor([0.0])])
    got, ref = expm1_accurate(x), torch.expm1(x.double())
    assert ((got.double() - ref).abs() / ref.abs().clamp_min(1e-300)).max() < 3e-7
    assert float(expm1_accurate(torch.tensor(-math.inf))) == -1.0
    y = torch.cat([torch.logspace(-30, 3, 100_000), -torch.logspace(-30, 0, 100_000) * 0.9999])
    got, ref = log1p_accurate(y), torch.log1p(y.double())
    assert ((got.double() - ref).abs() / ref.abs().clamp_min(1e-300)).max() < 3e-7
    assert float(log1p_accurate(torch.tensor(-1.0))) == -math.inf


@pytest.mark.parametrize("direction, model_offset, temperature", [("reverse", 1.0, 2.0), ("forward", 0.0, 1.0)])
def test_compiled_proxy_loss_matches_float64_closed_form(compiled, direction, model_offset, temperature):
    z, lp = _inputs()
    mask = torch.ones(N, dtype=torch.bool)
    mask[[3, 20]] = False
    z[3] = 1e4  # padding rows hold garbage: zero value and zero gradient
    z[20] = float("nan")
    lp[20] = float("nan")
    zz = z.clone().requires_grad_()
    value = losses.proxy_dirichlet_loss(zz, lp, direction=direction, model_offset=model_offset,
                                        temperature=temperature, mask=mask, reduction="none")
    assert C.proxy_kl_terms in C._compiled  # the compiled path was taken
    (grad,) = torch.autograd.grad(value.sum(), zz)
    keep = mask.nonzero().squeeze(-1)
    zd = z[keep].double().requires_grad_()
    ref = float64_proxy_loss(zd, lp[keep], temperature, direction, model_offset)
    (ref_grad,) = torch.autograd.grad(ref.sum(), zd)
    assert torch.all(value[~mask] == 0) and torch.all(grad[~mask] == 0)
    torch.testing.assert_close(value[keep].double(), ref.detach(), rtol=2e-3, atol=1e-3)
    torch.testing.assert_close(grad[keep].double(), ref_grad, rtol=2e-2, atol=1e-4)


def test_compiled_kl_to_a_given_target_and_compiled_target(compiled):
    z, lp = _inputs(1)
    target = proxy_target(lp)
    assert _target_chunk in C._compiled  # proxy_target took the compiled path
    ref_target = proxy_target(lp.double())
    torch.testing.assert_close(target.precision.double(), ref_target.precision, rtol=1e-4, atol=0)
    torch.testing.assert_close(target.beta.double(), ref_target.beta, rtol=1e-4, atol=1e-6)
    zz = z.clone().requires_grad_()
    value = losses.proxy_dirichlet_loss(zz, None, target=target, reduction="sum")
    assert C.kl_to_target_terms in C._compiled
    (grad,) = torch.autograd.grad(value, zz)
    zd = z.double().requires_grad_()
    ref = float64_proxy_loss(zd, lp, 1.0, "reverse", 1.0).sum()
    (ref_grad,) = torch.autograd.grad(ref, zd)
    torch.testing.assert_close(value.double(), ref.detach(), rtol=2e-3, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=2e-2, atol=1e-4)


def test_compile_failure_falls_back_to_the_eager_path_once(compiled, monkeypatch, caplog):
    z, lp = _inputs(2)
    monkeypatch.setenv(C.ENV_SWITCH, "0")
    assert not C.use_compiled(z)
    eager = losses.proxy_dirichlet_loss(z, lp, reduction="none")
    monkeypatch.delenv(C.ENV_SWITCH)

    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(C, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    with caplog.at_level(logging.WARNING, logger="shared._compiled"):
        fallback = losses.proxy_dirichlet_loss(z, lp, reduction="none")
    assert C._failed and not C.use_compiled(z)
    assert "no C++ compiler" in caplog.text
    torch.testing.assert_close(fallback, eager, rtol=0, atol=0)


def test_compiled_gradient_is_scaled_in_place_once(compiled):
    z, lp = _inputs(3)
    zz = z.clone().requires_grad_()
    value = losses.proxy_dirichlet_loss(zz, lp, reduction="mean")
    (g1,) = torch.autograd.grad(value * 3.0, zz, retain_graph=True)
    with pytest.raises(RuntimeError, match="already used by an earlier backward"):
        torch.autograd.grad(value, zz)
    zd = z.double().requires_grad_()
    (ref,) = torch.autograd.grad(3.0 * float64_proxy_loss(zd, lp, 1.0, "reverse", 1.0).mean(), zd)
    torch.testing.assert_close(g1.double(), ref, rtol=2e-2, atol=1e-5)


def test_compiled_paths_temper_and_upcast_per_chunk(compiled):
    z, lp = _inputs(4)
    tempered = proxy_target(lp, temperature=2.0)  # tempering applied chunk by chunk before the compiled body
    assert _target_chunk in C._compiled
    ref = proxy_target(lp.double(), temperature=2.0)
    torch.testing.assert_close(tempered.precision.double(), ref.precision, rtol=1e-4, atol=0)
    torch.testing.assert_close(tempered.beta.double(), ref.beta, rtol=1e-4, atol=1e-6)
    half = lp.to(torch.bfloat16)  # bf16 teachers are upcast per chunk: the same as upcasting them first
    a = losses.proxy_dirichlet_loss(z, half, temperature=2.0, reduction="none")
    b = losses.proxy_dirichlet_loss(z, half.float(), temperature=2.0, reduction="none")
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "eager"])
def test_loss_and_precision_equal_the_loss_on_a_precomputed_target(fused, monkeypatch):
    """proxy_dirichlet_loss_and_precision (what the fairseq criterions call, then logging β̂₀) gives the loss of a
    precomputed proxy_target and that target's precision, 1 at masked positions — on the compiled and eager paths."""
    monkeypatch.setattr(C, "MIN_ELEMENTS", 1000 if fused else 1 << 40)
    monkeypatch.setattr(C, "CHUNK_ELEMENTS", 10 * V)
    monkeypatch.setattr(C, "_failed", False)
    monkeypatch.delenv(C.ENV_SWITCH, raising=False)
    C._compiled.clear()
    z, lp = _inputs(4)
    mask = torch.ones(N, dtype=torch.bool)
    mask[[0, 9]] = False
    loss, precision = losses.proxy_dirichlet_loss_and_precision(z, lp, direction="forward", temperature=1.5, mask=mask,
                                                                reduction="none")
    assert (C.proxy_kl_terms in C._compiled) == fused
    target = proxy_target(lp, temperature=1.5)
    ref = losses.proxy_dirichlet_loss(z, None, direction="forward", temperature=1.5, mask=mask, reduction="none",
                                      target=target)
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(precision[mask], target.precision[mask], rtol=1e-5, atol=0)
    assert torch.all(precision[~mask] == 1.0) and not precision.requires_grad
