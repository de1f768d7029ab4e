"""Inputs, tolerances and comparisons shared by the GPU checks of ``shared`` (``test_gpu_shared.py``) and the
Triton-interpreter checks of the fused Proxy kernel on the CPU (``tests/shared/triton_interpreted.py``):
teachers with one-hot and near-one-hot rows, moderate and ±1e4 student logits, float64 comparisons."""

from __future__ import annotations

import math

import torch

from shared._tensor import MAX_LOG_ALPHA, MIN_LOG_ALPHA
from shared.dirichlet import proxy_target

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


def teachers() -> torch.Tensor:
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


def student(scale: float = 2.0) -> torch.Tensor:
    """Moderate logits: |z| ≲ 8, so that the gradients (∝ e^z for the Dirichlet losses) fit in float16."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, K, generator=g, dtype=torch.float64) * scale


def extreme_student() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return (torch.randint(0, 2, (N, K), generator=g).double() * 2 - 1) * 1e4


def assert_matches(got: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float, what: str) -> None:
    """Same non-finite pattern (inf where the reference is inf), finite values within tolerance."""
    got = got.detach().double().cpu()
    assert got.shape == ref.shape, what
    fin = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(got), fin), f"{what}: non-finite pattern differs"
    assert torch.equal(got[~fin], ref[~fin]), f"{what}: infinities differ"
    torch.testing.assert_close(got[fin], ref[fin], rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


#: temperature and model offset of the Dirichlet losses in LOSSES (α = exp(z / T) + offset)
DIRICHLET = {"nll": (1.5, 0.0), "rkl": (1.0, 1.0), "fkl": (1.0, 1.0), "rkl_epkl_t2": (2.0, 1.0)}


def float32_error_bound(name: str, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
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
