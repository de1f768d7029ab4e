"""The fused Proxy-Dirichlet Triton kernel (shared._triton_proxy) on the CPU, through Triton's interpreter.

Not collected by the suite directly (the kernels must be defined with ``TRITON_INTERPRET=1`` set before
triton is imported): ``test_triton_proxy_loss.py`` runs this file in a fresh pytest process with it. The
kernel code is the one CUDA runs; the interpreter executes each program with numpy, so values and the
masking/blocking logic are checked here, speed only on a GPU (``make bench`` there).

Blocks are forced small (32 classes) so that every row spans several blocks with a partial last one, and
M = 3 members pad to a tile of 4.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

import shared._triton_proxy as TP  # noqa: E402
from shared._triton_kernels import _expm1_nonpositive, _log1p_nonpositive  # noqa: E402
import shared.losses as L  # noqa: E402
from shared.dirichlet import proxy_target  # noqa: E402

from proxy_closed_form import float64_proxy_loss  # noqa: E402  (this folder: pytest puts it on sys.path)
from loss_inputs import (  # noqa: E402
    ATOL, DTYPES, GRAD_RTOL, RTOL, VALUE_RTOL, assert_matches, extreme_student, float32_error_bound, student, teachers,
)

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/shared/test_triton_proxy_loss.py"

N, M, K = 8, 3, 100
#: Rows of loss_inputs.teachers() kept (the interpreter's time grows with the rows): members agreeing one-hot,
#: disagreeing one-hot, ±1e4 logits, smooth.
EDGE_ROWS = torch.cat([torch.arange(0, 4), torch.arange(8, 12), torch.arange(16, 20), torch.arange(24, 28)])


def _edge_teachers() -> torch.Tensor:
    return teachers()[EDGE_ROWS]
VARIANTS = {  # name → (direction, estimator, temperature)
    "rkl": ("reverse", "mkl", 1.0),
    "fkl": ("forward", "mkl", 1.0),
    "rkl_epkl_t2": ("reverse", "epkl", 2.0),
}


@pytest.fixture(autouse=True)
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """Small blocks, the switch on, and a record of every call of the Triton path by the loss."""
    monkeypatch.setattr(TP, "MAX_BLOCK", 32)
    monkeypatch.setattr(TP, "_failed", False)
    monkeypatch.delenv(TP.ENV_SWITCH, raising=False)
    calls: list = []
    real = L.triton_proxy_kl
    monkeypatch.setattr(L, "triton_proxy_kl", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    return calls


def _loss(name: str, z: torch.Tensor, lp: torch.Tensor, **kw) -> torch.Tensor:
    direction, estimator, temperature = VARIANTS[name]
    return L.proxy_dirichlet_loss(z, lp, direction=direction, estimator=estimator, temperature=temperature, **kw)


def _closed_form(z: torch.Tensor, lp: torch.Tensor, name: str, model_offset: float) -> torch.Tensor:
    direction, estimator, temperature = VARIANTS[name]
    return float64_proxy_loss(z, lp, temperature, direction, model_offset, estimator)


def _smooth_inputs(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, K, generator=g) * 2
    lp = torch.log_softmax(torch.randn(N, M, K, generator=g) * 2 + torch.randn(N, 1, K, generator=g) * 3, -1)
    return z.to(dtype), lp.to(dtype)


CLOSED_FORM_CASES = [(name, 1.0, dtype) for name in VARIANTS for dtype in DTYPES] + [(name, 0.0, torch.float32) for name in VARIANTS]


@pytest.mark.parametrize("name, model_offset, dtype", CLOSED_FORM_CASES, ids=str)
def test_kernel_matches_the_float64_closed_form(name, model_offset, dtype, kernel_calls):
    """Value and gradient against float64 on the same rounded inputs; padded rows (garbage logits and
    teachers) give exact zeros; half logits get their gradient in their own dtype."""
    z, lp = _smooth_inputs(dtype)
    mask = torch.ones(N, dtype=torch.bool)
    mask[[2, 7]] = False
    z[2] = 1e4
    z[7], lp[7] = float("nan"), float("nan")
    zz = z.clone().requires_grad_()
    value = _loss(name, zz, lp, model_offset=model_offset, mask=mask, reduction="none")
    (grad,) = torch.autograd.grad(value.sum(), zz)
    assert kernel_calls == [(N, K)]
    assert value.dtype == torch.float32 and grad.dtype == dtype
    assert torch.all(value[~mask] == 0) and torch.all(grad[~mask] == 0)
    keep = mask.nonzero().squeeze(-1)
    zd = z[keep].double().requires_grad_()
    ref = _closed_form(zd, lp[keep], name, model_offset)
    (ref_grad,) = torch.autograd.grad(ref.sum(), zd)
    torch.testing.assert_close(value[keep].double(), ref.detach(), rtol=VALUE_RTOL[name], atol=ATOL)
    scale = ref_grad.abs().max().item()
    torch.testing.assert_close(grad[keep].double(), ref_grad, rtol=GRAD_RTOL[dtype], atol=GRAD_RTOL[dtype] * scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_one_hot_and_near_one_hot_teachers(name, dtype, kernel_calls):
    """Members agreeing one-hot (β̂₀ at the cap), disagreeing one-hot (β̂₀ = 0), ±1e4-logit members: finite,
    equal to the float64 eager loss on the same rounded inputs (the checks the GPU suite runs on CUDA)."""
    z, t = student()[EDGE_ROWS].to(dtype), _edge_teachers().to(dtype)
    zz = z.clone().requires_grad_()
    got = _loss(name, zz, t, reduction="none")
    (grad,) = torch.autograd.grad(got.sum(), zz)
    assert kernel_calls == [tuple(z.shape)]
    z64 = z.double().requires_grad_()
    ref = _loss(name, z64, t.double(), reduction="none")
    (ref_grad,) = torch.autograd.grad(ref.sum(), z64)
    assert torch.isfinite(got).all() and torch.isfinite(grad.float()).all()
    assert_matches(got, ref.detach(), VALUE_RTOL.get(name, RTOL), ATOL * max(1.0, ref.abs().max().item()), f"{name} value")
    scale = ref_grad.abs().max().item()
    assert_matches(grad, ref_grad, GRAD_RTOL[dtype], GRAD_RTOL[dtype] * scale, f"{name} gradient")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_extreme_logits_are_finite_and_match_the_float32_eager_path(name, kernel_calls, monkeypatch):
    """Student logits ±1e4: gradients equal to the eager float32 path's (exact zeros beyond the clamp), values
    within the float32 rounding bound of their lnΓ/ψ terms (the GPU suite's check)."""
    z, t = extreme_student()[EDGE_ROWS].float(), _edge_teachers().float()
    zz = z.clone().requires_grad_()
    got = _loss(name, zz, t, reduction="none")
    (grad,) = torch.autograd.grad(got.sum(), zz)
    assert kernel_calls
    monkeypatch.setenv(TP.ENV_SWITCH, "0")
    zc = z.clone().requires_grad_()
    ref = _loss(name, zc, t, reduction="none")
    (ref_grad,) = torch.autograd.grad(ref.sum(), zc)
    assert len(kernel_calls) == 1  # the switch turned the kernel off
    assert torch.isfinite(got).all() and torch.isfinite(grad).all()
    bound = float32_error_bound(name, z, t)
    diff = (got.detach().double() - ref.detach().double()).abs()
    assert (diff <= 2 * bound).all(), f"{name}: |kernel - eager| / bound up to {(diff / bound).max().item():.3g}"
    scale = max(ref_grad.abs().max().item(), 1e-30)
    assert_matches(grad, ref_grad.double(), GRAD_RTOL[torch.float32], GRAD_RTOL[torch.float32] * scale, f"{name} gradient")


@pytest.mark.parametrize("estimator", ["mkl", "epkl"])
def test_precision_estimate_matches_proxy_target(estimator):
    """β̂₀ returned by the kernel equals shared.dirichlet.proxy_target's float64 one, cap (1e10) and 0 included."""
    t = _edge_teachers()
    z = torch.zeros(t.shape[0], t.shape[-1])
    _, _, precision = TP.triton_proxy_kl(z, t.float(), 1.0, 1.0, estimator, True, False)
    ref = proxy_target(t, estimator=estimator).precision
    assert_matches(precision, ref, RTOL, ATOL, f"{estimator} precision")
    assert (precision[:4] == 1e10).all() and (precision[4:8] == 0).all()


def test_the_eager_path_is_kept_where_the_kernel_does_not_apply(kernel_calls, monkeypatch):
    z, lp = _smooth_inputs(torch.float32)
    L.proxy_dirichlet_loss(z, lp, target_offset=0.0)  # β may hit its floor: no closed-form β₀
    L.proxy_dirichlet_loss(z, lp, parametrization="softplus")
    L.proxy_dirichlet_loss(z, lp, clip_precision=100.0)
    L.proxy_dirichlet_loss(z, lp, topk=5)
    L.proxy_dirichlet_loss(z, None, target=proxy_target(lp))
    assert kernel_calls == []
    full = L.proxy_dirichlet_loss(z, lp, reduction="none")
    assert kernel_calls == [(N, K)]
    monkeypatch.setenv(TP.ENV_SWITCH, "0")
    eager = L.proxy_dirichlet_loss(z, lp, reduction="none")
    assert len(kernel_calls) == 1
    torch.testing.assert_close(full, eager, rtol=1e-4, atol=1e-5)


def test_mean_reduction_and_normalisation(kernel_calls):
    z, lp = _smooth_inputs(torch.float32, seed=1)
    mask = torch.ones(N, dtype=torch.bool)
    mask[:3] = False
    per_row = L.proxy_dirichlet_loss(z, lp, mask=mask, reduction="none")
    mean = L.proxy_dirichlet_loss(z, lp, mask=mask)
    raw = L.proxy_dirichlet_loss(z, lp, normalize=False, reduction="none")
    precision = proxy_target(lp.double()).precision
    assert len(kernel_calls) == 3
    torch.testing.assert_close(mean, per_row[mask].mean())
    torch.testing.assert_close(per_row[mask].double(), (raw / precision.clamp_min(1.0))[mask].double(), rtol=1e-4, atol=1e-6)


def test_a_kernel_failure_falls_back_to_the_eager_path_once(kernel_calls, monkeypatch, caplog):
    z, lp = _smooth_inputs(torch.float32, seed=2)
    kernels = TP._load()
    launches = []

    def broken(*args, **kwargs):
        launches.append(1)
        raise RuntimeError("no GPU compiler")

    monkeypatch.setattr(kernels, "launch", broken)
    with caplog.at_level(logging.WARNING, logger="shared._triton_proxy"):
        first = L.proxy_dirichlet_loss(z, lp, reduction="none")
        second = L.proxy_dirichlet_loss(z, lp, reduction="none")
    assert launches == [1] and TP._failed
    assert sum("Triton Proxy kernel failed" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setenv(TP.ENV_SWITCH, "0")
    torch.testing.assert_close(first, L.proxy_dirichlet_loss(z, lp, reduction="none"))
    torch.testing.assert_close(second, first)


def test_the_gradient_is_first_order_only(kernel_calls):
    z, lp = _smooth_inputs(torch.float32, seed=3)
    zz = z.clone().requires_grad_()
    value = L.proxy_dirichlet_loss(zz, lp)
    value.backward(retain_graph=True)
    first = zz.grad.clone()
    with pytest.raises(RuntimeError, match="already used"):
        value.backward()
    assert kernel_calls and torch.isfinite(first).all() and first.abs().sum() > 0


def test_temperature_scales_the_gradient(kernel_calls):
    """T = 3 (pass 0 of the kernel; ∂/∂z = ∂/∂(z/T) / T) against the float64 eager loss."""
    z, lp = _smooth_inputs(torch.float32, seed=4)
    zz = z.clone().requires_grad_()
    value = L.proxy_dirichlet_loss(zz, lp, temperature=3.0, reduction="sum")
    (grad,) = torch.autograd.grad(value, zz)
    zd = z.double().requires_grad_()
    ref = L.proxy_dirichlet_loss(zd, lp.double(), temperature=3.0, reduction="sum")
    (ref_grad,) = torch.autograd.grad(ref, zd)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=2e-4, atol=2e-4 * ref_grad.abs().max().item())
    assert kernel_calls and math.isfinite(float(value))
    torch.testing.assert_close(value.double(), ref.detach(), rtol=2e-3, atol=1e-3)


@triton.jit
def _series_kernel(x_ptr, e_ptr, l_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    tl.store(e_ptr + offs, _expm1_nonpositive(x), mask=offs < n)
    tl.store(l_ptr + offs, _log1p_nonpositive(tl.maximum(x, -1.0)), mask=offs < n)


def test_series_expm1_and_log1p_match_float64():
    """The kernel's own expm1 (d ≤ 0) and log1p (−1 ≤ y ≤ 0), on both sides of their series/direct switch."""
    x = torch.cat([-torch.logspace(-30, 2, 4000), torch.linspace(-1, 0, 2001), torch.tensor([0.0, -math.inf])])
    e, lg = torch.empty_like(x), torch.empty_like(x)
    _series_kernel[(triton.cdiv(x.numel(), 1024),)](x, e, lg, x.numel(), BLOCK=1024)
    ref_e = torch.expm1(x.double())
    ref_l = torch.log1p(x.double().clamp_min(-1.0))
    fin = torch.isfinite(ref_l)
    assert ((e.double() - ref_e).abs() / ref_e.abs().clamp_min(1e-300)).max() < 5e-7
    assert ((lg.double() - ref_l)[fin].abs() / ref_l[fin].abs().clamp_min(1e-300)).max() < 5e-7
    assert float(e[-1]) == -1.0 and torch.equal(torch.isinf(lg), ~fin)


def test_precision_of_nearly_agreeing_members_matches_float64():
    """Members within ~1e-3 of each other (β̂₀ ≈ 1e5–1e7, where a textbook H[p̄] − mean H[p_m] would cancel)."""
    g = torch.Generator().manual_seed(5)
    base = torch.randn(N, 1, K, generator=g, dtype=torch.float64) * 3
    for scale in (1e-2, 1e-3):
        lp = torch.log_softmax(base + scale * torch.randn(N, M, K, generator=g, dtype=torch.float64), -1)
        for estimator in ("mkl", "epkl"):
            _, _, precision = TP.triton_proxy_kl(torch.zeros(N, K), lp.float(), 1.0, 1.0, estimator, True, False)
            ref = proxy_target(lp.float().double(), estimator=estimator).precision
            torch.testing.assert_close(precision.double(), ref, rtol=2e-3, atol=0, msg=lambda m: f"{estimator} {scale}: {m}")


def test_loss_and_precision_for_the_criterions(kernel_calls):
    """What the fairseq criterions call: the kernel's loss and its β̂₀ (1 at masked positions) equal the loss on a
    precomputed float64 target and that target's precision."""
    z, lp = _smooth_inputs(torch.float32, seed=6)
    mask = torch.ones(N, dtype=torch.bool)
    mask[1] = False
    loss, precision = L.proxy_dirichlet_loss_and_precision(z, lp, direction="forward", mask=mask, reduction="none")
    assert kernel_calls == [(N, K)]
    target = proxy_target(lp.double())
    ref = L.proxy_dirichlet_loss(z.double(), None, direction="forward", mask=mask, reduction="none", target=target)
    torch.testing.assert_close(loss.double(), ref, rtol=2e-3, atol=1e-3)
    torch.testing.assert_close(precision[mask].double(), target.precision[mask], rtol=1e-4, atol=0)
    assert precision[1] == 1.0


def test_a_nan_logit_gives_a_nan_loss_as_on_the_eager_path(kernel_calls, monkeypatch):
    """A diverged student (NaN logit) must show as a NaN loss, not be clamped away (max/min drop NaN)."""
    z, lp = _smooth_inputs(torch.float32, seed=7)
    z[3, 5] = float("nan")
    got = L.proxy_dirichlet_loss(z, lp, reduction="none")
    monkeypatch.setenv(TP.ENV_SWITCH, "0")
    ref = L.proxy_dirichlet_loss(z, lp, reduction="none")
    assert kernel_calls == [(N, K)]
    assert torch.isnan(got[3]) and torch.isnan(ref[3])
    keep = torch.arange(N) != 3
    assert torch.isfinite(got[keep]).all()
    torch.testing.assert_close(got[keep], ref[keep], rtol=1e-4, atol=1e-5)
