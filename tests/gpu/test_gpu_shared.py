"""``shared`` math on CUDA: fp32/fp16/bf16 inputs against CPU float64 references, extreme inputs, gradients,
and the chunked Proxy-Dirichlet loss on a 40k vocabulary (value, gradient, peak GPU memory)."""

from __future__ import annotations

import math
from typing import Callable, Dict

import pytest
import torch

from shared._tensor import MAX_LOG_ALPHA, MIN_LOG_ALPHA
from shared.dirichlet import proxy_target
from shared.losses import dirichlet_nll_loss, ensemble_kd_loss, hydra_loss, proxy_dirichlet_loss
from shared.uncertainty import alphas_from_logits, dirichlet_uncertainty, ensemble_uncertainty

CUDA = torch.device("cuda")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
N, M, K = 48, 4, 64
#: Half inputs are computed in float32, so every dtype gets float32 tolerances against a float64
#: computation on the *same rounded* inputs (the rounding of the inputs is not an error of the code).
RTOL, ATOL = 2e-4, 1e-4
#: Gradients of half inputs come back in that half dtype: its rounding (eps/2) on top.
GRAD_RTOL = {torch.float32: 2e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}
#: The Proxy losses drop β-only constants and divide by β̂₀: a difference of large lnΓ/ψ terms whose float32
#: cancellation error reaches ~1e-3 relative (seen on CPU and GPU alike for some rounded inputs).
VALUE_RTOL = {"rkl": 2e-3, "fkl": 2e-3, "rkl_epkl_t2": 2e-3}


def _teachers() -> torch.Tensor:
    """float64 [N, M, K] member log-probabilities: smooth rows, exact one-hot rows (−inf; members agreeing,
    then disagreeing) and near-one-hot rows from ±1e4 logits."""
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(N, M, K, generator=g, dtype=torch.float64) * 3, -1)
    rows = torch.arange(8)
    agree = torch.randint(0, K, (8,), generator=g)
    lp[0:8] = -math.inf
    lp[rows[:, None], torch.arange(M)[None, :], agree[:, None].expand(8, M)] = 0.0
    lp[8:16] = -math.inf
    lp[(8 + rows)[:, None], torch.arange(M)[None, :], torch.randint(0, K, (8, M), generator=g)] = 0.0
    sign = torch.randint(0, 2, (8, M, K), generator=g).double() * 2 - 1
    lp[16:24] = torch.log_softmax(sign * 1e4, -1)
    return lp


def _student(scale: float = 2.0) -> torch.Tensor:
    """Moderate logits: |z| ≲ 8, so that the gradients (∝ e^z for the Dirichlet losses) fit in float16."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, K, generator=g, dtype=torch.float64) * scale


def _extreme_student() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return (torch.randint(0, 2, (N, K), generator=g).double() * 2 - 1) * 1e4


LOSSES: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "kd": lambda z, t: ensemble_kd_loss(z, t, 2.0, reduction="none"),
    "nll": lambda z, t: dirichlet_nll_loss(z, t, 1.5, reduction="none"),
    "rkl": lambda z, t: proxy_dirichlet_loss(z, t, reduction="none"),
    "fkl": lambda z, t: proxy_dirichlet_loss(z, t, direction="forward", reduction="none"),
    "rkl_epkl_t2": lambda z, t: proxy_dirichlet_loss(z, t, estimator="epkl", temperature=2.0, reduction="none"),
    "hydra": lambda z, t: hydra_loss(z.unsqueeze(1).expand(-1, t.shape[1], -1), t, 2.0, reduction="none"),
}


def _assert_matches(got: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float, what: str) -> None:
    """Same non-finite pattern (inf where the reference is inf), finite values within tolerance."""
    got = got.detach().double().cpu()
    assert got.shape == ref.shape, what
    fin = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(got), fin), f"{what}: non-finite pattern differs"
    assert torch.equal(got[~fin], ref[~fin]), f"{what}: infinities differ"
    torch.testing.assert_close(got[fin], ref[fin], rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_uncertainty_measures_match_cpu_float64(dtype: torch.dtype) -> None:
    t = _teachers().to(dtype)
    ref = ensemble_uncertainty(t.double())
    got = ensemble_uncertainty(t.to(CUDA))
    for key, value in got.items():
        assert value.device.type == CUDA.type and value.dtype == torch.float32, key
        _assert_matches(value, ref[key], RTOL, ATOL, f"ensemble {key}")
        fin = torch.isfinite(value)
        assert fin.all() or key in ("epkl", "rmi"), key  # only the disagreeing one-hot rows are infinite
    assert torch.isinf(got["epkl"][8:16]).all()  # disagreeing one-hot members: KL genuinely infinite

    for z in (_student(), _extreme_student()):
        zd = z.to(dtype)
        alphas = alphas_from_logits(zd.to(CUDA), offset=1.0)
        ref_alphas = alphas_from_logits(zd.float(), offset=1.0).double()  # the float32 clamp at 30, as on CUDA
        _assert_matches(alphas, ref_alphas, 1e-6, 0.0, "alphas")
        ref = dirichlet_uncertainty(ref_alphas)
        for key, value in dirichlet_uncertainty(alphas).items():
            assert torch.isfinite(value).all(), key
            _assert_matches(value, ref[key], RTOL, ATOL, f"dirichlet {key}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_proxy_target_matches_cpu_float64(dtype: torch.dtype) -> None:
    t = _teachers().to(dtype)
    for estimator in ("mkl", "epkl"):
        ref = proxy_target(t.double(), estimator=estimator)
        got = proxy_target(t.to(CUDA), estimator=estimator)
        assert torch.isfinite(got.beta).all() and torch.isfinite(got.precision).all()
        _assert_matches(got.precision, ref.precision, RTOL, ATOL, f"{estimator} precision")
        _assert_matches(got.beta, ref.beta, RTOL, ATOL, f"{estimator} beta")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_and_gradients_match_cpu_float64(name: str, dtype: torch.dtype) -> None:
    """Moderate student logits, teachers with one-hot and ±1e4 rows: values and gradients vs float64."""
    loss = LOSSES[name]
    z, t = _student().to(dtype), _teachers().to(dtype)
    z64 = z.double().requires_grad_()
    ref = loss(z64, t.double())
    (ref_grad,) = torch.autograd.grad(ref.sum(), z64)
    zc = z.to(CUDA).requires_grad_()
    got = loss(zc, t.to(CUDA))
    (grad,) = torch.autograd.grad(got.sum(), zc)
    assert got.dtype == torch.float32 and grad.dtype == dtype
    assert torch.isfinite(got).all() and torch.isfinite(grad.float()).all()
    rtol = VALUE_RTOL.get(name, RTOL)
    _assert_matches(got, ref.detach(), rtol, ATOL * max(1.0, ref.abs().max().item()), f"{name} value")
    scale = ref_grad.abs().max().item()
    _assert_matches(grad, ref_grad, GRAD_RTOL[dtype], GRAD_RTOL[dtype] * scale, f"{name} gradient")


#: temperature and model offset of the Dirichlet losses in LOSSES (α = exp(z / T) + offset)
DIRICHLET = {"nll": (1.5, 0.0), "rkl": (1.0, 1.0), "fkl": (1.0, 1.0), "rkl_epkl_t2": (2.0, 1.0)}


def _float32_error_bound(name: str, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-row bound on the float32 rounding error of a Dirichlet loss value: (K+2)·eps·Σ|terms|.

    With logits at the clamp (α = e^30 ≈ 1e13) the value is a difference of lnΓ/ψ terms of size ~α₀ ln α₀
    ≈ 1e16, so float32 keeps only its leading digits; CPU and CUDA sum in different orders and may differ
    by up to that much. Terms are bounded by (x + y)(|ln x| + |ln y| + 2) with x from α and y from β
    (or 20 ≥ |ln π| for the NLL's smoothed log-probabilities); Proxy values are divided by max(β̂₀, 1)."""
    temperature, offset = DIRICHLET[name]
    a = (z.float() / temperature).clamp(MIN_LOG_ALPHA[torch.float32], MAX_LOG_ALPHA[torch.float32]).double().exp() + offset
    if name == "nll":
        b, norm = torch.full_like(a, 20.0), torch.ones(a.shape[0], dtype=torch.float64)
    else:
        tgt = proxy_target(t.double(), estimator="epkl" if name == "rkl_epkl_t2" else "mkl", temperature=temperature)
        b, norm = tgt.beta, tgt.precision.clamp_min(1.0)
    a0, b0 = a.sum(-1), b.sum(-1)
    terms = ((a + b) * (a.log().abs() + b.log().abs() + 2)).sum(-1) + (a0 + b0) * (a0.log().abs() + b0.log().abs() + 2)
    eps = torch.finfo(torch.float32).eps
    return (a.shape[-1] + 2) * eps * terms / norm


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_with_extreme_logits_are_finite_and_match_cpu(name: str, dtype: torch.dtype) -> None:
    """Student logits ±1e4 (clamped to the float32 range of log α): finite on CUDA, gradients equal to CPU's
    (exact zeros beyond the clamp), values equal to the same float32 computation on CPU — to 1e-4 where the
    value is well conditioned, within the float32 rounding bound of its terms for the Dirichlet losses
    (float64 clamps at another bound, so it is no reference here)."""
    loss = LOSSES[name]
    z, t = _extreme_student().to(dtype), _teachers().to(dtype)
    zcpu = z.clone().requires_grad_()
    ref = loss(zcpu, t)
    (ref_grad,) = torch.autograd.grad(ref.sum(), zcpu)
    zc = z.to(CUDA).requires_grad_()
    got = loss(zc, t.to(CUDA))
    (grad,) = torch.autograd.grad(got.sum(), zc)
    assert torch.isfinite(got).all(), got
    assert torch.isfinite(grad.float()).all()
    if name in DIRICHLET and name != "fkl":
        bound = _float32_error_bound(name, z, t)
        diff = (got.detach().double().cpu() - ref.detach().double()).abs()
        assert (diff <= 2 * bound).all(), f"{name}: |CUDA - CPU| / bound up to {(diff / bound).max().item():.3g}"
    else:
        _assert_matches(got, ref.detach().double(), 1e-4, 1e-4 * max(1.0, ref.abs().max().item()), f"{name} value")
    scale = max(ref_grad.abs().max().item(), 1e-30)
    _assert_matches(grad, ref_grad.double(), GRAD_RTOL[dtype], GRAD_RTOL[dtype] * scale, f"{name} gradient")


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
        _assert_matches(got, ref.detach(), 1e-4, 1e-4 * ref.abs().max().item(), f"{direction} value")
        scale = ref_grad.abs().max().item()
        _assert_matches(zc.grad, ref_grad, 1e-3, 1e-4 * scale, f"{direction} gradient")


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
