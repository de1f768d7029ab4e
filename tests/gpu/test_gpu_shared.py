"""``shared`` math on CUDA: fp32/fp16/bf16 inputs against CPU float64 references, extreme inputs, gradients,
and the chunked Proxy-Dirichlet loss on a 40k vocabulary (value, gradient, peak GPU memory)."""

from __future__ import annotations

from typing import Callable, Dict

import pytest
import torch

from shared.dirichlet import proxy_target
from shared.losses import dirichlet_nll_loss, ensemble_kd_loss, hydra_loss, proxy_dirichlet_loss
from shared.uncertainty import alphas_from_logits, dirichlet_uncertainty, ensemble_uncertainty

from loss_inputs import (  # noqa: E402  (tests/gpu on sys.path: pytest prepends the test file's folder)
    ATOL, DIRICHLET, DTYPES, GRAD_RTOL, RTOL, VALUE_RTOL, assert_matches, extreme_student, float32_error_bound, student,
    teachers,
)

CUDA = torch.device("cuda")
LOSSES: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "kd": lambda z, t: ensemble_kd_loss(z, t, 2.0, reduction="none"),
    "nll": lambda z, t: dirichlet_nll_loss(z, t, 1.5, reduction="none"),
    "rkl": lambda z, t: proxy_dirichlet_loss(z, t, reduction="none"),
    "fkl": lambda z, t: proxy_dirichlet_loss(z, t, direction="forward", reduction="none"),
    "rkl_epkl_t2": lambda z, t: proxy_dirichlet_loss(z, t, estimator="epkl", temperature=2.0, reduction="none"),
    "hydra": lambda z, t: hydra_loss(z.unsqueeze(1).expand(-1, t.shape[1], -1), t, 2.0, reduction="none"),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_uncertainty_measures_match_cpu_float64(dtype: torch.dtype) -> None:
    t = teachers().to(dtype)
    ref = ensemble_uncertainty(t.double())
    got = ensemble_uncertainty(t.to(CUDA))
    for key, value in got.items():
        assert value.device.type == CUDA.type and value.dtype == torch.float32, key
        assert_matches(value, ref[key], RTOL, ATOL, f"ensemble {key}")
        fin = torch.isfinite(value)
        assert fin.all() or key in ("epkl", "rmi"), key  # only the disagreeing one-hot rows are infinite
    assert torch.isinf(got["epkl"][8:16]).all()  # disagreeing one-hot members: KL genuinely infinite

    for z in (student(), extreme_student()):
        zd = z.to(dtype)
        alphas = alphas_from_logits(zd.to(CUDA), offset=1.0)
        ref_alphas = alphas_from_logits(zd.float(), offset=1.0).double()  # the float32 clamp at 30, as on CUDA
        assert_matches(alphas, ref_alphas, 1e-6, 0.0, "alphas")
        ref = dirichlet_uncertainty(ref_alphas)
        for key, value in dirichlet_uncertainty(alphas).items():
            assert torch.isfinite(value).all(), key
            assert_matches(value, ref[key], RTOL, ATOL, f"dirichlet {key}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_proxy_target_matches_cpu_float64(dtype: torch.dtype) -> None:
    t = teachers().to(dtype)
    for estimator in ("mkl", "epkl"):
        ref = proxy_target(t.double(), estimator=estimator)
        got = proxy_target(t.to(CUDA), estimator=estimator)
        assert torch.isfinite(got.beta).all() and torch.isfinite(got.precision).all()
        assert_matches(got.precision, ref.precision, RTOL, ATOL, f"{estimator} precision")
        assert_matches(got.beta, ref.beta, RTOL, ATOL, f"{estimator} beta")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_and_gradients_match_cpu_float64(name: str, dtype: torch.dtype) -> None:
    """Moderate student logits, teachers with one-hot and ±1e4 rows: values and gradients vs float64."""
    loss = LOSSES[name]
    z, t = student().to(dtype), teachers().to(dtype)
    z64 = z.double().requires_grad_()
    ref = loss(z64, t.double())
    (ref_grad,) = torch.autograd.grad(ref.sum(), z64)
    zc = z.to(CUDA).requires_grad_()
    got = loss(zc, t.to(CUDA))
    (grad,) = torch.autograd.grad(got.sum(), zc)
    assert got.dtype == torch.float32 and grad.dtype == dtype
    assert torch.isfinite(got).all() and torch.isfinite(grad.float()).all()
    rtol = VALUE_RTOL.get(name, RTOL)
    assert_matches(got, ref.detach(), rtol, ATOL * max(1.0, ref.abs().max().item()), f"{name} value")
    scale = ref_grad.abs().max().item()
    assert_matches(grad, ref_grad, GRAD_RTOL[dtype], GRAD_RTOL[dtype] * scale, f"{name} gradient")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_with_extreme_logits_are_finite_and_match_cpu(name: str, dtype: torch.dtype) -> None:
    """Student logits ±1e4 (clamped to the float32 range of log α): finite on CUDA, gradients equal to CPU's
    (exact zeros beyond the clamp), values equal to the same float32 computation on CPU — to 1e-4 where the
    value is well conditioned, within the float32 rounding bound of its terms for the Dirichlet losses
    (float64 clamps at another bound, so it is no reference here)."""
    loss = LOSSES[name]
    z, t = extreme_student().to(dtype), teachers().to(dtype)
    zcpu = z.clone().requires_grad_()
    ref = loss(zcpu, t)
    (ref_grad,) = torch.autograd.grad(ref.sum(), zcpu)
    zc = z.to(CUDA).requires_grad_()
    got = loss(zc, t.to(CUDA))
    (grad,) = torch.autograd.grad(got.sum(), zc)
    assert torch.isfinite(got).all(), got
    assert torch.isfinite(grad.float()).all()
    if name in DIRICHLET and name != "fkl":
        bound = float32_error_bound(name, z, t)
        diff = (got.detach().double().cpu() - ref.detach().double()).abs()
        assert (diff <= 2 * bound).all(), f"{name}: |CUDA - CPU| / bound up to {(diff / bound).max().item():.3g}"
    else:
        assert_matches(got, ref.detach().double(), 1e-4, 1e-4 * max(1.0, ref.abs().max().item()), f"{name} value")
    scale = max(ref_grad.abs().max().item(), 1e-30)
    assert_matches(grad, ref_grad.double(), GRAD_RTOL[dtype], GRAD_RTOL[dtype] * scale, f"{name} gradient")


def test_chunked_proxy_loss_on_40k_vocabulary() -> None:
    """Reverse and forward Proxy loss at V = 40k (many row chunks) on CUDA in float32 (fast special
    functions) vs CPU float64 (torch's exact ones)."""
    n, m, v = 96, 4, 40_000
    g = torch.Generator().manual_seed(3)
    z = torch.randn(n, v, generator=g) * 2
    t = torch.log_softmax(torch.randn(n, m, v, generator=g) * 3, -1)
    t[:4] = torch.log_softmax(torch.randn(4, 1, v, generator=g).expand(4, m, v) * 1e4, -1)  # members agree, ~one-hot
    for direction in ("reverse", "forward"):
        z64 = z.double().requires_grad_()
        ref = proxy_dirichlet_loss(z64, t.double(), direction=direction, reduction="none")
        (ref_grad,) = torch.autograd.grad(ref.sum(), z64)

        zc, tc = z.to(CUDA).requires_grad_(), t.to(CUDA)
        got = proxy_dirichlet_loss(zc, tc, direction=direction, reduction="none")
        got.sum().backward()
        assert torch.isfinite(got).all() and torch.isfinite(zc.grad).all()
        assert_matches(got, ref.detach(), 1e-4, 1e-4 * ref.abs().max().item(), f"{direction} value")
        scale = ref_grad.abs().max().item()
        assert_matches(zc.grad, ref_grad, 1e-3, 1e-4 * scale, f"{direction} gradient")


@pytest.mark.parametrize("direction", ["reverse", "forward"])
def test_proxy_loss_peak_gpu_memory(direction: str) -> None:
    """Issue #2 target at the benchmark size (N = 1024, V = 40k, M = 5): the extra peak GPU memory of one
    forward+backward is at most 3 tensors of [N, V] float32 (β, the gradient buffer, the returned gradient),
    the row-chunk workspace included."""
    n, m, v = 1024, 5, 40_000
    torch.manual_seed(0)
    z = (torch.randn(n, v, device=CUDA) * 2).requires_grad_()
    t = torch.log_softmax(torch.randn(n, m, v, device=CUDA) * 3, -1)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    proxy_dirichlet_loss(z, t, direction=direction).backward()
    torch.cuda.synchronize()
    peak_nv = (torch.cuda.max_memory_allocated() - base) / (n * v * 4)
    print(f"{direction}: peak extra memory {peak_nv:.3f} x [N, V] (allowed 3)")
    assert torch.isfinite(z.grad).all()
    assert peak_nv <= 3.0, f"{direction}: peak extra memory {peak_nv:.3f} x [N, V]"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_proxy_loss_runs_the_triton_kernel_on_cuda(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults on CUDA take the fused Triton kernel (shared._triton_proxy), and it compiles: no fallback."""
    import shared._triton_proxy as TP
    import shared.losses as L

    calls = []
    real = L.triton_proxy_kl
    monkeypatch.setattr(L, "triton_proxy_kl", lambda *a, **k: calls.append(a[0].dtype) or real(*a, **k))
    z, t = student().to(dtype).to(CUDA).requires_grad_(), teachers().to(dtype).to(CUDA)
    for name in ("rkl", "fkl", "rkl_epkl_t2"):
        LOSSES[name](z, t).sum().backward()
    assert calls == [dtype] * 3 and not TP._failed
    assert torch.isfinite(z.grad.float()).all()
