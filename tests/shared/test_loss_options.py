"""Distillation loss options of issue 14: softplus parametrization, precision clipping, top-K merging.

Every value is checked against an independent float64 computation: the closed-form Dirichlet KL
(:func:`shared.dirichlet.kl_divergence`, autograd for the gradient) or an explicit log-density,
with α, the clipping and the class merging written out here; gradients also by finite differences
(``torch.autograd.gradcheck``).
"""

import math

import pytest
import torch

from shared.dirichlet import kl_divergence, log_normalizer, proxy_target
from shared.losses import dirichlet_nll_loss, dropped_constant, proxy_dirichlet_loss
from shared.uncertainty import alphas_from_logits

DIRECTIONS = ["reverse", "forward"]


def _inputs(n=4, m=3, k=7, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, k, generator=g, dtype=torch.float64) * scale).requires_grad_()
    teachers = torch.log_softmax(torch.randn(n, m, k, generator=g, dtype=torch.float64) * 2, -1)
    return z, teachers


def _alpha_reference(z, offset, parametrization, clip):
    """α written out: exp(z)+c or softplus(z)+c (1e-8 floor without offset), then α·min(1, A/α₀)."""
    if parametrization == "exp":
        a = torch.exp(z) + offset
    else:
        a = torch.log1p(torch.exp(z)) + (offset if offset else 1e-8)
    if clip is not None:
        a = a * torch.clamp(clip / a.sum(-1, keepdim=True), max=1.0)
    return a


@pytest.mark.parametrize("parametrization", ["exp", "softplus"])
@pytest.mark.parametrize("offset", [0.0, 1.0])
@pytest.mark.parametrize("clip", [None, 3.0, 1e6])
def test_alphas_from_logits_matches_reference(parametrization, offset, clip):
    z, _ = _inputs()
    got = alphas_from_logits(z, offset=offset, parametrization=parametrization, clip_precision=clip)
    ref = _alpha_reference(z, offset, parametrization, clip)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-300)
    if clip is not None:
        assert float(got.detach().sum(-1).max()) <= clip * (1 + 1e-12)
        torch.testing.assert_close(got / got.sum(-1, keepdim=True), ref / ref.sum(-1, keepdim=True))
    g1, = torch.autograd.grad(got.pow(2).sum(), z)
    g2, = torch.autograd.grad(ref.pow(2).sum(), z)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_alphas_from_logits_refuses_bad_clip(bad):
    with pytest.raises(ValueError, match="clip_precision"):
        alphas_from_logits(torch.zeros(3), clip_precision=bad)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("parametrization, clip", [("softplus", None), ("exp", 4.0), ("softplus", 4.0)])
def test_proxy_loss_options_equal_closed_form_kl(direction, parametrization, clip):
    z, teachers = _inputs()
    temperature = 1.5
    loss = proxy_dirichlet_loss(z, teachers, direction=direction, temperature=temperature, reduction="none",
                                parametrization=parametrization, clip_precision=clip)
    target = proxy_target(teachers, temperature=temperature)
    alpha = _alpha_reference(z / temperature, 1.0, parametrization, clip)
    kl = kl_divergence(alpha, target.beta) if direction == "reverse" else kl_divergence(target.beta, alpha)
    norm = target.precision.clamp_min(1.0)
    torch.testing.assert_close(loss * norm + dropped_constant(target.beta, direction), kl, rtol=1e-10, atol=1e-9)
    g1, = torch.autograd.grad(loss.sum(), z)
    g2, = torch.autograd.grad((kl / norm).sum(), z)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


def _merged(x, top):
    """Top classes then the sum of the rest, written with an explicit loop."""
    rows = []
    for i in range(x.shape[0]):
        keep = [int(j) for j in top[i]]
        rest = [j for j in range(x.shape[-1]) if j not in keep]
        rows.append(torch.cat([x[i, keep], x[i, rest].sum(-1, keepdim=True)]))
    return torch.stack(rows)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("topk", [2, 4])
def test_topk_proxy_loss_is_kl_of_merged_dirichlets(direction, topk):
    z, teachers = _inputs()
    loss = proxy_dirichlet_loss(z, teachers, direction=direction, reduction="none", topk=topk)
    target = proxy_target(teachers)
    top = target.beta.argsort(-1, descending=True)[:, :topk]  # the teachers' top-k of the mean
    alpha, beta = _merged(torch.exp(z) + 1.0, top), _merged(target.beta, top)
    kl = kl_divergence(alpha, beta) if direction == "reverse" else kl_divergence(beta, alpha)
    norm = target.precision.clamp_min(1.0)
    torch.testing.assert_close(loss * norm + dropped_constant(beta, direction), kl, rtol=1e-10, atol=1e-9)
    g1, = torch.autograd.grad(loss.sum(), z)
    g2, = torch.autograd.grad((kl / norm).sum(), z)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("direction", DIRECTIONS + ["nll"])
def test_topk_v_minus_1_equals_full_loss(direction):
    z, teachers = _inputs(k=9)
    k = z.shape[-1]
    if direction == "nll":
        def f(**kw):
            return dirichlet_nll_loss(z, teachers, temperature=1.3, model_offset=0.5, reduction="none", **kw)
    else:
        def f(**kw):
            return proxy_dirichlet_loss(z, teachers, direction=direction, temperature=1.3, reduction="none", **kw)
    full, merged = f(), f(topk=k - 1)
    torch.testing.assert_close(merged, full, rtol=1e-12, atol=1e-12)
    g1, = torch.autograd.grad(full.sum(), z)
    g2, = torch.autograd.grad(merged.sum(), z)
    torch.testing.assert_close(g2, g1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("topk", [3])
def test_topk_nll_is_merged_dirichlet_density(topk):
    z, teachers = _inputs()
    smoothing = 1e-3
    loss = dirichlet_nll_loss(z, teachers, smoothing=smoothing, parametrization="softplus", clip_precision=6.0,
                              topk=topk, reduction="none")
    k = z.shape[-1]
    pi = (1 - smoothing) * teachers.exp() + smoothing / k
    top = pi.mean(1).argsort(-1, descending=True)[:, :topk]
    alpha = _merged(_alpha_reference(z, 0.0, "softplus", 6.0), top)
    pi_m = torch.stack([_merged(pi[:, j], top) for j in range(pi.shape[1])], 1)
    ref = -(((alpha.unsqueeze(1) - 1) * pi_m.log()).sum(-1) - log_normalizer(alpha).unsqueeze(1)).mean(1)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("reverse", dict(parametrization="softplus", clip_precision=5.0, topk=3)),
        ("forward", dict(parametrization="exp", clip_precision=5.0, topk=2)),
        ("nll", dict(parametrization="softplus", clip_precision=20.0, topk=3)),
    ],
)
def test_gradcheck_finite_differences(kind, kwargs):
    z, teachers = _inputs(n=3, k=6, scale=1.0)
    if kind == "nll":
        def f(x):
            return dirichlet_nll_loss(x, teachers, reduction="none", **kwargs)
    else:
        def f(x):
            return proxy_dirichlet_loss(x, teachers, direction=kind, reduction="none", **kwargs)
    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["reverse", "forward", "nll"])
@pytest.mark.parametrize("options", [
    dict(parametrization="softplus"), dict(clip_precision=100.0), dict(topk=3),
    dict(parametrization="softplus", clip_precision=100.0, topk=5),
])
def test_extreme_logits_and_one_hot_teachers_stay_finite(dtype, kind, options):
    k = 8
    z = torch.tensor([[1e4] * k, [-1e4] * k, [1e4, -1e4] * (k // 2), [0.0] * k], dtype=dtype).requires_grad_()
    one_hot = torch.full((4, 2, k), -math.inf)
    one_hot[:, 0, 0] = 0.0
    one_hot[:, 1, 1 if kind != "nll" else 0] = 0.0  # disagreeing one-hot members (flat Proxy target), agreeing for NLL
    one_hot[3] = torch.log_softmax(torch.randn(2, k), -1)
    teachers = one_hot.to(dtype)
    if kind == "nll":
        loss = dirichlet_nll_loss(z, teachers, reduction="sum", **options)
    else:
        loss = proxy_dirichlet_loss(z, teachers, direction=kind, reduction="sum", **options)
    loss.backward()
    assert torch.isfinite(loss), loss
    grad = z.grad.float()
    # half-precision gradients may overflow their dtype (documented in shared.losses); float32 must be finite
    assert not grad.isnan().any() and (dtype != torch.float32 or grad.isfinite().all())


def test_topk_refuses_bad_values():
    z, teachers = _inputs()
    for bad in (-1, 7, 2.5, True):
        with pytest.raises(ValueError, match="topk"):
            proxy_dirichlet_loss(z, teachers, topk=bad)
