"""Fused CPU passes through ``torch.compile`` for the two [N, K]-sized parts of the Proxy loss.

The eager paths walk [N, K] (or [N, M, K]) tensors in cache-sized row chunks with tens of
elementwise tensor ops per chunk, each one more pass over memory, and torch's CPU ``expm1``/``log1p``/
``lgamma``/``digamma`` are scalar loops. Handing the same chunk functions to ``torch.compile``
(TorchInductor) fuses them, row reductions included, into vectorised C++ loops. Same formulas, same
constants, same clamping; float32 on the CPU only (float64 keeps torch's exact functions; on a GPU each
eager op is already one kernel). Used for:

- the Dirichlet KL to a fixed target, value and analytic gradient (:func:`kl_to_target_terms`,
  called by :class:`shared.losses._DirichletKLToTarget`)::

    reverse ([Proxy] eq. 14, 16): value = lnΓ(α₀) − Σ lnΓ(α_k) + Σ (α_k − β_k) ψ(α_k) − (α₀ − β₀) ψ(α₀)
                                  ∂/∂z_k = ((α_k − β_k) ψ'(α_k) − (α₀ − β₀) ψ'(α₀)) · e^{z_k}
    forward ([Proxy] eq. 13, 15): value = Σ lnΓ(α_k) − lnΓ(α₀) − Σ α_k ψ(β_k) + α₀ ψ(β₀)
                                  ∂/∂z_k = (ψ(α_k) − ψ(α₀) − ψ(β_k) + ψ(β₀)) · e^{z_k}

  with α = e^z + offset, z clamped to [MIN_LOG_ALPHA, MAX_LOG_ALPHA] (zero gradient outside);
- the Proxy target's chunk body in :func:`shared.dirichlet.proxy_target` ([Proxy] eq. 17).

When (:func:`use_compiled`): CPU, float32, at least :data:`MIN_ELEMENTS` elements (below that the
one-off compilation, seconds, is not worth it), and ``ENDIST_COMPILED_LOSS`` not ``0``. Chunks have a
fixed row count (the last one padded), so one compilation serves every batch size of a vocabulary;
Inductor caches compiled code on disk across processes. If compilation fails (no C++ compiler, an
unsupported platform), a warning is logged once and the eager path is used from then on.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from shared._special import gamma_terms
from shared._tensor import MAX_LOG_ALPHA, MIN_LOG_ALPHA

logger = logging.getLogger(__name__)

#: Smallest number of elements (N·K logits, N·M·K teacher log-probs) for which a compiled pass is used.
MIN_ELEMENTS = 1 << 22
#: Logits per compiled KL row chunk (rows = CHUNK_ELEMENTS // K): one chunk's z, β and gradient stay
#: in the CPU's cache.
CHUNK_ELEMENTS = 1 << 18
#: Environment switch: ``0`` turns the compiled pass off (``1``/unset: on where eligible).
ENV_SWITCH = "ENDIST_COMPILED_LOSS"

_compiled: Dict[Callable, Callable] = {}
_failed = False


def kl_to_target_terms(
    z: torch.Tensor, beta: torch.Tensor, offset: float, reverse: bool, need_grad: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Value [N] and ∂value/∂z [N, K] (or None) of the KL above, as plain tensor maths (the function
    that is compiled; also runs eagerly)."""
    lo, cap = MIN_LOG_ALPHA[torch.float32], MAX_LOG_ALPHA[torch.float32]
    ez = torch.exp(z.clamp(lo, cap))
    a = ez + offset
    a0 = a.sum(-1, keepdim=True)
    b0 = beta.sum(-1, keepdim=True)
    lg, dg, tg = gamma_terms(a, with_trigamma=need_grad and reverse)
    lg0, dg0, tg0 = gamma_terms(a0, with_trigamma=need_grad and reverse)
    if reverse:
        diff = a - beta
        val = lg0 - lg.sum(-1, keepdim=True) + (diff * dg).sum(-1, keepdim=True) - (a0 - b0) * dg0
        grad = diff * tg - (a0 - b0) * tg0 if need_grad else None
    else:
        _, dgb, _ = gamma_terms(beta, with_trigamma=False)
        _, dgb0, _ = gamma_terms(b0, with_trigamma=False)
        val = lg.sum(-1, keepdim=True) - lg0 - (a * dgb).sum(-1, keepdim=True) + a0 * dgb0
        grad = dg - dg0 - dgb + dgb0 if need_grad else None
    if grad is not None:
        inside = (z >= lo) & (z <= cap)
        grad = torch.where(inside, grad * ez, torch.zeros_like(grad))
    return val.squeeze(-1), grad


def proxy_kl_terms(
    z: torch.Tensor, lp: torch.Tensor, offset: float, target_offset: float, estimator: str, reverse: bool, need_grad: bool
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Value, gradient and β̂₀ of the Proxy loss of a chunk (student logits [rows, K], member log-probs
    [rows, M, K]): :func:`shared.dirichlet.proxy_target`'s chunk body, then :func:`kl_to_target_terms`."""
    from shared.dirichlet import _target_chunk  # shared.dirichlet imports this module

    precision, beta = _target_chunk(lp, estimator, target_offset, 1.0, True)
    val, grad = kl_to_target_terms(z, beta, offset, reverse, need_grad)
    return val, grad, precision


def use_compiled(x: torch.Tensor) -> bool:
    """Whether the compiled passes apply to ``x`` (see the module docstring)."""
    return (
        not _failed
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.numel() >= MIN_ELEMENTS
        and os.environ.get(ENV_SWITCH, "1") != "0"
    )


def run_chunked(fn: Callable, rows: int, tensors: Sequence[torch.Tensor], pads: Sequence[float], *args,
                prepare: Optional[Callable[[int, torch.Tensor], torch.Tensor]] = None) -> Optional[List[torch.Tensor]]:
    """``fn(*chunks, *args)`` compiled, over fixed-size row chunks of ``tensors`` (the last chunk padded
    with ``pads``), outputs (tensors with the chunk's rows first, or None) concatenated over the rows.
    ``prepare(i, chunk)``, if given, maps the chunk of ``tensors[i]`` eagerly first (e.g. a temperature, which
    would make the compiled graph recompile for every value; per chunk, not a full-size copy).
    None if compilation failed (the caller then takes its eager path)."""
    global _failed
    compiled = _compiled.get(fn)
    if compiled is None:
        compiled = _compiled[fn] = torch.compile(fn, dynamic=False, fullgraph=True)
    n = tensors[0].shape[0]
    results: List[Optional[torch.Tensor]] = []
    try:
        for s in range(0, n, rows):
            chunks = [t[s : s + rows] if prepare is None else prepare(i, t[s : s + rows]) for i, t in enumerate(tensors)]
            e = chunks[0].shape[0]
            if e < rows:  # pad: the compiled graph has a static shape
                chunks = [torch.cat([c, c.new_full((rows - e,) + c.shape[1:], p)]) for c, p in zip(chunks, pads)]
            outs = compiled(*chunks, *args)
            if not results:  # preallocated outputs: no [N, K] concatenation at the end
                results = [o.new_empty((n,) + o.shape[1:]) if o is not None else None for o in outs]
            for r, o in zip(results, outs):
                if r is not None:
                    r[s : s + e] = o[:e]
    except Exception as exc:  # no compiler / unsupported platform: the eager path is exact too
        _failed = True
        logger.warning("torch.compile unavailable for %s (%s: %s); using the eager path", fn.__name__, type(exc).__name__, exc)
        return None
    return results


def compiled_kl_to_target(
    z: torch.Tensor, beta: torch.Tensor, offset: float, reverse: bool, need_grad: bool
) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """:func:`kl_to_target_terms` compiled over row chunks of :data:`CHUNK_ELEMENTS` logits (pads z = 0,
    β = 1); None if compilation failed."""
    rows = max(1, CHUNK_ELEMENTS // max(z.shape[-1], 1))
    out = run_chunked(kl_to_target_terms, rows, (z, beta), (0.0, 1.0), float(offset), reverse, need_grad)
    return None if out is None else (out[0], out[1])


def compiled_proxy_kl(
    z: torch.Tensor, lp: torch.Tensor, offset: float, target_offset: float, estimator: str, reverse: bool, need_grad: bool,
    temperature: float = 1.0,
) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]]:
    """:func:`proxy_kl_terms` compiled over row chunks of about :data:`CHUNK_ELEMENTS` logits (pads: z = 0,
    uniform members ln 1/K), logits and members tempered per chunk (z / T, log_softmax(ln p / T));
    None if compilation failed. The gradient is with respect to z / T (the caller scales by 1/T)."""
    k = z.shape[-1]
    rows = max(1, CHUNK_ELEMENTS // max(k, 1))
    def prepare(i: int, c: torch.Tensor) -> torch.Tensor:
        c = c.float()  # half teachers: upcast per chunk
        if temperature == 1.0:
            return c.contiguous()
        return c / temperature if i == 0 else torch.log_softmax(c / temperature, dim=-1)
    out = run_chunked(proxy_kl_terms, rows, (z, lp), (0.0, -math.log(max(k, 1))), float(offset), float(target_offset),
                      estimator, reverse, need_grad, prepare=prepare)
    return None if out is None else (out[0], out[1], out[2])
