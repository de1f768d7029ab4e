"""Fused Proxy-Dirichlet loss on CUDA: target, KL and gradient in one Triton kernel (issue 16).

:func:`shared.losses.proxy_dirichlet_loss` with its defaults (``parametrization="exp"``, no precision clip,
no top-k) on a CUDA tensor calls :func:`triton_proxy_kl` instead of the chunked eager ops: one kernel
(:mod:`shared._triton_kernels`, formulas there: [Proxy] eq. 13–17) reads the members and the logits,
writes one float32 [N, K] row buffer (p̄ in the first pass, the gradient in the second), and
never materialises β, α or the tempered members. The backward only scales the stored gradient
(:class:`shared.losses._WithGradient`: first order).

When (:func:`use_triton`): the logits are on a CUDA device — or on the CPU while Triton's interpreter is on
(``TRITON_INTERPRET=1`` set before this module's kernels are imported; that is how the tests run the same
kernel without a GPU) — Triton imports, ``target_offset ≥ shared.dirichlet.MIN_CONCENTRATION`` (then the
floor on β never applies and β₀ has a closed form), and ``ENDIST_TRITON_LOSS`` is not ``0``. If the kernel
fails to compile or launch, a warning is logged once and the eager path is used from then on.
"""

from __future__ import annotations

import contextlib
import logging
import os
from types import ModuleType
from typing import Optional, Tuple

import torch

from shared.dirichlet import MIN_CONCENTRATION

logger = logging.getLogger(__name__)

#: Environment switch: ``0`` turns the Triton kernel off (``1``/unset: on where eligible).
ENV_SWITCH = "ENDIST_TRITON_LOSS"
#: Largest members × classes tile one program holds (``MP · BLOCK``): registers, not shared memory.
MAX_TILE = 4096
#: Most classes per block.
MAX_BLOCK = 1024

_kernels: Optional[ModuleType] = None
_failed = False


def interpreting() -> bool:
    """Whether Triton's interpreter is on (kernels then run on CPU tensors, with numpy)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _load() -> Optional[ModuleType]:
    global _kernels, _failed
    if _kernels is None and not _failed:
        try:
            from shared import _triton_kernels
        except Exception as exc:  # no triton for this platform
            _failed = True
            logger.warning("Triton unavailable (%s: %s); the Proxy loss uses its eager path", type(exc).__name__, exc)
            return None
        _kernels = _triton_kernels
    return _kernels


def use_triton(logits: torch.Tensor, target_offset: float) -> bool:
    """Whether :func:`triton_proxy_kl` applies (see the module docstring)."""
    on_device = logits.is_cuda or (logits.device.type == "cpu" and interpreting())
    return (
        on_device
        and logits.numel() > 0
        and not _failed
        and logits.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and target_offset >= MIN_CONCENTRATION
        and os.environ.get(ENV_SWITCH, "1") != "0"
        and _load() is not None
    )


def tile_shape(k: int, m: int) -> Tuple[int, int]:
    """(padded members MP, classes per block) of one program's tile."""
    mp = 1 << max(m - 1, 0).bit_length()
    return mp, max(16, min(MAX_BLOCK, MAX_TILE // mp, 1 << max(k - 1, 0).bit_length()))


def warps(block: int) -> int:
    """Warps per program: one per 128 classes of a block (32 threads × 4 classes), 1 to 8, so that a block's classes
    are spread over the warps rather than its member axis (reductions over the members then stay inside a thread)."""
    return max(1, min(8, block // 128))


def triton_proxy_kl(
    z: torch.Tensor, lp: torch.Tensor, offset: float, target_offset: float, estimator: str, reverse: bool,
    need_grad: bool, temperature: float = 1.0,
) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]]:
    """Proxy loss of student logits ``z [N, K]`` and member log-probs ``lp [N, M, K]`` (any float dtypes):
    (N, K ≥ 1) → (value ``[N]`` float32 before normalisation, ∂value/∂(z/T) ``[N, K]`` float32 or None, β̂₀ ``[N]``
    float32) — the contract of :func:`shared._compiled.compiled_proxy_kl`; None if the kernel failed."""
    global _failed
    kernels = _load()
    if kernels is None:
        return None
    n, k = z.shape
    m = lp.shape[1]
    f32 = torch.float32
    val = torch.empty(n, dtype=f32, device=z.device)
    prec = torch.empty(n, dtype=f32, device=z.device)
    # float32 even for half logits: the raw gradient is scaled by the incoming one (e.g. 1/β̂₀ ≈ 1e-10 where the
    # members agree) before autograd casts it to z's dtype; stored in half it could overflow first
    grad = torch.empty(n, k, dtype=f32, device=z.device) if need_grad else None
    scratch = grad if grad is not None else torch.empty(n, k, dtype=f32, device=z.device)
    mp, block = tile_shape(k, m)
    try:
        with torch.cuda.device(z.device) if z.is_cuda else contextlib.nullcontext():  # Triton launches on the current device
            kernels.launch(z.contiguous(), lp.contiguous(), val, grad, scratch, prec, k, m, 1.0 / temperature,
                           float(offset), float(target_offset), reverse, estimator == "mkl", temperature != 1.0, block,
                           mp, warps(block))
    except Exception as exc:  # compilation or launch failed: the eager path is exact too
        _failed = True
        logger.warning("Triton Proxy kernel failed (%s: %s); using the eager path", type(exc).__name__, exc)
        return None
    return val, grad, prec
