"""The fused Proxy-Dirichlet Triton kernel compiles for NVIDIA GPUs — checked on the CPU, without a GPU.

Triton's interpreter (``test_triton_proxy_loss.py``) runs the kernel's Python, but does not type-check it the
way the compiler does (e.g. a loop-carried variable that changes type compiles nowhere, yet interprets fine).
Here ``triton.compile`` lowers every specialisation the wrapper can launch to PTX and then to a cubin with
the ``ptxas`` Triton ships, for Ampere (sm_80) and Hopper (sm_90); no driver or device is involved.
"""

from __future__ import annotations

import itertools

import pytest
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from shared._triton_kernels import proxy_kl_kernel
from shared._triton_proxy import tile_shape, warps

FLAGS = list(itertools.product([True, False], repeat=4))  # REVERSE, MKL, TEMPERED, NEED_GRAD


def _compile(m: int, k: int, flags: tuple, dtype: str, arch: int):
    reverse, mkl, tempered, need_grad = flags
    mp, block = tile_shape(k, m)
    signature = {"z_ptr": f"*{dtype}", "lp_ptr": f"*{dtype}", "val_ptr": "*fp32", "grad_ptr": "*fp32",
                 "pbar_ptr": "*fp32", "prec_ptr": "*fp32", "K": "i32", "inv_t": "fp32", "offset": "fp32",
                 "target_offset": "fp32", "M": "constexpr", "MP": "constexpr", "BLOCK": "constexpr",
                 "REVERSE": "constexpr", "MKL": "constexpr", "TEMPERED": "constexpr", "NEED_GRAD": "constexpr"}
    constants = dict(M=m, MP=mp, BLOCK=block, REVERSE=reverse, MKL=mkl, TEMPERED=tempered, NEED_GRAD=need_grad)
    src = ASTSource(proxy_kl_kernel, signature, constants)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps(block)})


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # really compile, never read an earlier result


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(n for n, on in zip(("rev", "mkl", "temp", "grad"), f) if on) or "none")
def test_every_specialisation_compiles_for_hopper(flags):
    """M = 5, V = 40k (the benchmark's shape), float32 inputs: all 16 combinations of the kernel's switches."""
    kernel = _compile(5, 40_000, flags, "fp32", 90)
    assert ".entry proxy_kl_kernel" in kernel.asm["ptx"] and kernel.asm["cubin"]


@pytest.mark.parametrize("m, k, dtype, arch", [(1, 1, "fp16", 80), (2, 2, "bf16", 90), (3, 100, "fp16", 90),
                                               (10, 40_001, "bf16", 80), (16, 64, "fp32", 90), (20, 7, "fp32", 80)])
def test_member_counts_vocabularies_and_half_inputs_compile(m, k, dtype, arch):
    """Tiles from 1×16 to 32×128, one-member and one-class rows, odd vocabularies, fp16/bf16 inputs, sm_80."""
    for flags in [(True, True, False, True), (False, False, True, True)]:
        kernel = _compile(m, k, flags, dtype, arch)
        assert kernel.asm["cubin"]
