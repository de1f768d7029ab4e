"""Member-grouped kernels: M networks of one architecture run as ONE network on a batch-major batch.

Layout (**batch-major**): row ``b·M + m`` of an activation ``[B·M, C, ...]`` is example ``b`` for member ``m``.
This memory is *also* ``[B, M·C, ...]`` (members stacked along the channels), so every layer is one op
without copies:

* convolution: member m's kernel ``W_m [O, I, k, k]`` stacked to ``[M·O, I, k, k]``, one convolution with
  ``groups = M`` on ``[B, M·I, H, W]`` (output channel block m sees input channel block m only):
  ``y[b, m] = conv(x[b, m]; W_m) + b_m``;
* linear: ``y[b, m] = W_m x[b, m] + b_m`` (one batched matmul);
* batch norm: per member (``[B, M·C, ...]`` with stacked statistics: one BatchNorm with M·C channels) or
  shared by all members (``[B·M, C, ...]``: statistics over all rows, as a shared BatchNorm on a member-major batch);
* element-wise and per-row layers (ReLU, pooling, flatten, residual additions) act per row and need nothing.

The output ``[B·M, K]`` *is* ``[B, M, K]`` (a view): the multi-member output convention needs no transpose.

Used by the BatchEnsemble fast path (:class:`endist_vision.models.wrappers.batchensemble.BatchEnsembleNet`:
``W_m = W ∘ r_m s_mᵀ`` materialised per forward, [BE] eq. 2, so the rank-one factors cost no activation-sized
multiplications) and by the vectorised deep ensemble
(:class:`endist_vision.models.wrappers.ensemble.GroupedEnsemble`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def to_batch_major(x: torch.Tensor, ensemble_size: int) -> torch.Tensor:
    """``[B, ...]`` → ``[B·M, ...]`` with row ``b·M + m`` = ``x[b]`` (every member sees the same input)."""
    return x.unsqueeze(1).expand(x.shape[0], ensemble_size, *x.shape[1:]).reshape(-1, *x.shape[1:])


def members_to_batch_major_rows(xs: torch.Tensor) -> torch.Tensor:
    """``[M, B, ...]`` (member m's own batch) → ``[B·M, ...]`` batch-major."""
    return xs.transpose(0, 1).reshape(-1, *xs.shape[2:])


def grouped_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int | tuple,
                   padding: int | tuple, dilation: int | tuple) -> torch.Tensor:
    """``x [B·M, I, H, W]`` batch-major, ``weight [M, O, I, k, k]``, ``bias [M, O]`` → ``[B·M, O, H', W']``:
    ``y[b·M + m] = conv(x[b·M + m]; W_m) + b_m`` as one convolution with ``groups = M``."""
    m, o = weight.shape[:2]
    rows, i = x.shape[:2]
    if rows % m != 0:
        raise ValueError(f"batch of {rows} rows is not a multiple of ensemble_size={m}")
    y = F.conv2d(x.reshape(rows // m, m * i, *x.shape[2:]), weight.reshape(m * o, *weight.shape[2:]),
                 None if bias is None else bias.reshape(m * o), stride, padding, dilation, m)
    return y.reshape(rows, o, *y.shape[2:])


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x [B·M, I]`` batch-major, ``weight [M, O, I]``, ``bias [M, O]`` → ``[B·M, O]``: ``y[b, m] = W_m x[b, m] + b_m``."""
    m, o, i = weight.shape
    if x.dim() != 2 or x.shape[0] % m != 0:
        raise ValueError(f"grouped linear needs a [B·M, in] input with M={m}, got {tuple(x.shape)}")
    xm = x.reshape(-1, m, i).transpose(0, 1)  # [M, B, I] (a view)
    y = torch.bmm(xm, weight.transpose(1, 2)) if bias is None else torch.baddbmm(bias.unsqueeze(1), xm, weight.transpose(1, 2))
    return y.transpose(0, 1).reshape(-1, o)


def grouped_batch_norm(x: torch.Tensor, ensemble_size: int, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                       weight: torch.Tensor | None, bias: torch.Tensor | None, use_batch_stats: bool,
                       momentum: float, eps: float) -> torch.Tensor:
    """One BatchNorm per member on a batch-major ``x [B·M, C, ...]``: statistics / affine maps ``[M, C]`` (or None).

    Member m's channels are normalised over its own ``B`` rows (and the spatial positions), exactly what
    ``BatchNorm(C)`` does on member m's ``[B, C, ...]`` batch. ``running_mean``/``running_var`` (flattened
    ``[M·C]`` tensors) are updated in place when ``use_batch_stats``: ``r ← (1 − momentum) r + momentum · stat``.
    """
    m, c, rows = ensemble_size, x.shape[1], x.shape[0]
    y = F.batch_norm(x.reshape(rows // m, m * c, *x.shape[2:]),
                     None if running_mean is None else running_mean.reshape(m * c),
                     None if running_var is None else running_var.reshape(m * c),
                     None if weight is None else weight.reshape(m * c), None if bias is None else bias.reshape(m * c),
                     use_batch_stats, momentum, eps)
    return y.reshape(x.shape)


def member_batch_norm(x: torch.Tensor, bns: "list[torch.nn.modules.batchnorm._BatchNorm]") -> torch.Tensor:
    """``bns[m]`` applied to member m's rows of a batch-major ``x [B·M, C, ...]`` — the same result, running-stat
    updates and ``num_batches_tracked`` counts as calling every ``bns[m]`` on its own ``[B, C, ...]`` batch
    (the logic of ``torch.nn.modules.batchnorm._BatchNorm.forward``), in one BatchNorm call.

    The members' running statistics are stacked for the call and the updated values written back."""
    first = bns[0]
    training = first.training
    factor = 0.0 if first.momentum is None else first.momentum
    if training and first.track_running_stats:
        for bn in bns:
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
        if first.momentum is None and first.num_batches_tracked is not None:
            factor = 1.0 / float(first.num_batches_tracked)
    use_batch_stats = training or (first.running_mean is None and first.running_var is None)
    keep_stats = (not training or first.track_running_stats) and first.running_mean is not None
    rm = torch.stack([bn.running_mean for bn in bns]) if keep_stats else None
    rv = torch.stack([bn.running_var for bn in bns]) if keep_stats else None
    w = torch.stack([bn.weight for bn in bns]) if first.affine else None
    b = torch.stack([bn.bias for bn in bns]) if first.affine else None
    y = grouped_batch_norm(x, len(bns), rm, rv, w, b, use_batch_stats, factor, first.eps)
    if use_batch_stats and rm is not None:
        with torch.no_grad():
            for i, bn in enumerate(bns):
                bn.running_mean.copy_(rm[i])
                bn.running_var.copy_(rv[i])
    return y


#: CPU evaluation cuts a batch whose M-fold expanded input has at least CPU_EVAL_MIN_ELEMENTS elements into at
#: least M chunks (about B rows each, the size of one member's own pass) with at most CPU_EVAL_CHUNK_ELEMENTS
#: expanded input elements each (see :func:`cpu_eval_chunks`; measured on ResNet-20/WRN-28-1, M = 4, B = 128, and
#: digits_cnn, M = 5, B = 256).
CPU_EVAL_CHUNK_ELEMENTS = 1 << 18
CPU_EVAL_MIN_ELEMENTS = 1 << 16


def cpu_eval_chunks(x: torch.Tensor, ensemble_size: int) -> list[torch.Tensor]:
    """``x [B, ...]`` split along the batch for an evaluation-mode CPU pass of the M-fold batch; ``[x]`` if small.

    Evaluation is per row, so chunks give the same values. They keep every activation of the M-fold batch at
    the size of one member's pass, far below glibc's largest mmap threshold (32 MiB): freed blocks are reused
    instead of unmapped and faulted in again at every layer (which made the M-fold batch slower than M separate
    passes on the CPU), and a layer's output still sits in the cache when the next layer reads it."""
    total = x.numel() * ensemble_size
    if total < CPU_EVAL_MIN_ELEMENTS:
        return [x]
    chunks = min(x.shape[0], max(ensemble_size, -(-total // CPU_EVAL_CHUNK_ELEMENTS)))
    return [x] if chunks <= 1 else list(x.split(-(-x.shape[0] // chunks)))


class frozen_weights:
    """Context manager: inside it, every module of ``modules`` that has a ``frozen_weights()`` method computes its
    member weights once (``module._frozen = module.frozen_weights()``) and reuses them for every chunk."""

    def __init__(self, modules: "list[torch.nn.Module]") -> None:
        self.modules = [m for m in modules if hasattr(m, "frozen_weights")]

    def __enter__(self) -> None:
        for m in self.modules:
            m._frozen = m.frozen_weights()

    def __exit__(self, *exc: object) -> None:
        for m in self.modules:
            m._frozen = None
