"""BatchEnsemble layers and networks ([BE] §2–3, eq. 2; [LatentBE] §2.3).

Member ``m`` of a BatchEnsemble layer uses the weight ``W_m = W ∘ r_m s_mᵀ`` ([BE] eq. 2), where ``W`` is
shared, ``r_m`` scales the outputs and ``s_m`` the inputs.  Because the rank-one factor is a Hadamard
product, the layer never materialises ``W_m``:

    y_m = r_m ∘ (W (s_m ∘ x)) + b_m           (linear; conv: per-channel scaling of the feature maps)

Batch layout is **member-major**: the network input ``[B, ...]`` is repeated M times along the batch
axis (:func:`repeat_members`) so that rows ``m·B … (m+1)·B − 1`` belong to member ``m``; the final
``[M·B, K]`` logits become ``[B, M, K]`` with :func:`members_to_batch_major` (the output convention of
multi-member students in ``endist_vision``).  That is the reference path. :class:`BatchEnsembleNet` instead sets
``batch_major`` on its layers (the fast path): rows ``b·M + m``, and the factors are folded into the member weights,
``conv(x; W ∘ r_m s_mᵀ)`` as one grouped convolution per layer (:mod:`.grouped`), so no activation-sized
multiplications by ``s``/``r`` and no member-major copies; the values are the same up to rounding.

Fast weights are stored as offsets from a fixed prior mean, ``r = r_prior + fast_r``.  Plain weight
decay on ``fast_r`` therefore decays ``r`` toward ``r_prior``: toward 0 for classic BE, toward 1 for
LatentBE ([LatentBE] Alg. 2 line 8, the Gaussian prior with mean 1 of §3.1).  They live in their own
optimiser parameter group (:func:`split_fast_parameters`).

Batch normalisation is shared by all members by default (as in Wen et al.'s BE ResNets and the
uncertainty-baselines BE WRN that [BE] reuses): in training mode it normalises over the whole ``M·B`` batch, in
evaluation mode it is a fixed affine map. ``member_bn=True`` (:class:`EnsembleBatchNorm`) gives every member its
own BatchNorm (affine parameters and running statistics) on its ``B`` rows.

:func:`factorize_ensemble` is the rank-one reconstruction of [BE] §2 footnote 1,
``min_{W₀, {r_i, s_i}} Σ_i ‖W₀ ∘ r_i s_iᵀ − W_i‖²`` by alternating least squares, behind the BE+INIT rows
(:meth:`endist_vision.models.wrappers.batchensemble.BatchEnsembleNet.init_from_members`).

The network wrapper (input repetition, ``[B, M, K]`` output, per-member extraction) is
:class:`endist_vision.models.wrappers.batchensemble.BatchEnsembleNet`.
"""

from __future__ import annotations

import copy
import math
from typing import Iterator, Literal

import torch
from torch import nn
from torch.nn import functional as F

from .grouped import grouped_conv2d, grouped_linear, member_batch_norm

FastInit = Literal["ones", "random_sign", "normal"]
Mode = Literal["ensemble", "averaged"]  # "averaged": factor-averaged weights ([LatentBE] eq. 5)


def repeat_members(x: torch.Tensor, ensemble_size: int) -> torch.Tensor:
    """``[B, ...]`` → ``[M·B, ...]`` in member-major order (row ``m·B + b`` is example ``b`` for member ``m``)."""
    return x.repeat(ensemble_size, *([1] * (x.dim() - 1)))


def members_to_batch_major(y: torch.Tensor, ensemble_size: int) -> torch.Tensor:
    """``[M·B, K]`` (member-major) → ``[B, M, K]``: ``out[b, m] = y[m·B + b]``.

    This is the one place where the BatchEnsemble batch layout is undone; every loss and evaluation
    downstream sees the ``[B, M, K]`` multi-member convention.
    """
    if y.shape[0] % ensemble_size != 0:
        raise ValueError(
            f"batch of {y.shape[0]} rows is not a multiple of ensemble_size={ensemble_size}"
        )
    batch = y.shape[0] // ensemble_size
    return y.reshape(ensemble_size, batch, *y.shape[1:]).transpose(0, 1)


class _BatchEnsembleMixin(nn.Module):
    """Shared bookkeeping of the BE layers: fast weights, per-member bias, forward modes."""

    ensemble_size: int
    mode: Mode
    #: ``True``: input ``[B·M, ...]`` in the batch-major layout of :mod:`.grouped` (row ``b·M + m``) and the
    #: member weights ``W ∘ r_m s_mᵀ`` are materialised (one grouped op); ``False``: member-major, factors applied
    #: to the activations. Same values; :class:`~endist_vision.models.wrappers.batchensemble.BatchEnsembleNet`
    #: sets ``True`` on its layers (the fast path).
    batch_major: bool = False
    _frozen: "torch.Tensor | None" = None  # member weights reused across the chunks of one evaluation pass

    def _init_fast(
        self, in_features: int, out_features: int, ensemble_size: int, fast_init: FastInit,
        fast_prior: float, bias: bool, init_std: float,
    ) -> None:
        if ensemble_size < 1:
            raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}")
        self.ensemble_size = ensemble_size
        self.mode = "ensemble"
        self.register_buffer("fast_prior", torch.tensor(float(fast_prior)))
        r0 = _fast_values(ensemble_size, out_features, fast_init, init_std)
        s0 = _fast_values(ensemble_size, in_features, fast_init, init_std)
        self.fast_r = nn.Parameter(r0 - fast_prior)
        self.fast_s = nn.Parameter(s0 - fast_prior)
        self.member_bias = nn.Parameter(torch.zeros(ensemble_size, out_features)) if bias else None

    @property
    def r(self) -> torch.Tensor:
        """Output-side factors ``[M, out]`` (``r_prior + fast_r``)."""
        return self.fast_prior + self.fast_r

    @property
    def s(self) -> torch.Tensor:
        """Input-side factors ``[M, in]`` (``s_prior + fast_s``)."""
        return self.fast_prior + self.fast_s

    def _expand(self, v: torch.Tensor, batch: int, ndim: int) -> torch.Tensor:
        """``[M, C]`` → ``[M·batch, C, 1, ...]`` matching an activation with ``ndim`` dims."""
        e = v.repeat_interleave(batch, dim=0)
        return e.reshape(*e.shape, *([1] * (ndim - 2)))

    def _core(self, x: torch.Tensor) -> torch.Tensor:  # shared W applied, no bias
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.ensemble_size
        if self.mode == "averaged":
            # Weight-averaged evaluation computed *through the factors*:
            # mean_m [r_m ∘ W(s_m ∘ x) + b_m] = (W ∘ mean_m r_m s_mᵀ) x + mean_m b_m   (linear in W_m).
            y = self._ensemble_forward(repeat_members(x, m))
            return y.reshape(m, x.shape[0], *y.shape[1:]).mean(0)
        if self.batch_major:
            return self._grouped_forward(x)
        return self._ensemble_forward(x)

    def member_weights(self) -> torch.Tensor:
        """``[M, *weight.shape]``: member m's full weight ``W ∘ r_m s_mᵀ`` ([BE] eq. 2), differentiable in W, r, s."""
        w, r, s = self.weight, self.r, self.s
        rs = (r[:, :, None] * s[:, None, :]).to(w.dtype)
        return w.unsqueeze(0) * rs.reshape(*rs.shape, *([1] * (w.dim() - 2)))

    def frozen_weights(self) -> torch.Tensor:
        return self.member_weights()

    def _weights(self) -> torch.Tensor:
        return self.member_weights() if self._frozen is None else self._frozen

    def _grouped_forward(self, x: torch.Tensor) -> torch.Tensor:  # batch-major input, folded factors
        raise NotImplementedError

    def _ensemble_forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.ensemble_size
        if x.shape[0] % m != 0:
            raise ValueError(
                f"{type(self).__name__}: batch of {x.shape[0]} rows is not a multiple of "
                f"ensemble_size={m}; repeat the input with repeat_members() first"
            )
        b = x.shape[0] // m
        y = self._core(x * self._expand(self.s, b, x.dim())) * self._expand(self.r, b, x.dim())
        if self.member_bias is not None:
            y = y + self._expand(self.member_bias, b, x.dim())
        return y

    def merged_weight(self) -> torch.Tensor:
        """``W ∘ (1/M) Σ_m r_m s_mᵀ`` ([LatentBE] eq. 5), shaped like the shared weight."""
        factor = torch.einsum("mo,mi->oi", self.r, self.s) / self.ensemble_size
        w = self.weight
        return w * factor.reshape(*factor.shape, *([1] * (w.dim() - 2)))

    def merged_bias(self) -> torch.Tensor | None:
        """``(1/M) Σ_m b_m`` — the bias of the weight-averaged layer."""
        return None if self.member_bias is None else self.member_bias.mean(0)


def _fast_values(m: int, n: int, init: FastInit, std: float) -> torch.Tensor:
    if init == "ones":
        return torch.ones(m, n)
    if init == "random_sign":  # Wen et al.: r, s ~ ±1 with equal probability
        return torch.randint(0, 2, (m, n)).float() * 2 - 1
    if init == "normal":
        return 1.0 + std * torch.randn(m, n)
    raise ValueError(f"fast_init must be one of ones|random_sign|normal, got {init!r}")


class BatchEnsembleLinear(_BatchEnsembleMixin):
    """Linear layer with M rank-one members: ``y_m = r_m ∘ (W (s_m ∘ x)) + b_m`` ([BE] eq. 2).

    Input ``[M·B, in]`` member-major, output ``[M·B, out]``.  ``weight`` has the ``nn.Linear`` shape.
    """

    def __init__(
        self, in_features: int, out_features: int, ensemble_size: int, bias: bool = True,
        fast_init: FastInit = "random_sign", fast_prior: float = 0.0, init_std: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._init_fast(in_features, out_features, ensemble_size, fast_init, fast_prior, bias, init_std)
        if self.member_bias is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.member_bias, -bound, bound)

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def _grouped_forward(self, x: torch.Tensor) -> torch.Tensor:
        return grouped_linear(x, self._weights(), self.member_bias)

    def to_plain(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the weight-averaged parameters (single-model cost)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.member_bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.merged_weight())
            if lin.bias is not None:
                lin.bias.copy_(self.merged_bias())
        return lin


class BatchEnsembleConv2d(_BatchEnsembleMixin):
    """2-D convolution with M rank-one members ([BE] eq. 2 applied per kernel position).

    ``W ∘ r_m s_mᵀ`` scales output channel ``o`` / input channel ``i`` of every kernel tap, so
    ``conv(x; W ∘ r_m s_mᵀ) = r_m ∘ conv(s_m ∘ x; W)`` with channel-wise scaling.  Input
    ``[M·B, C_in, H, W]`` member-major.  ``groups`` must be 1.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, ensemble_size: int,
        stride: int = 1, padding: int = 0, bias: bool = True, fast_init: FastInit = "random_sign",
        fast_prior: float = 0.0, init_std: float = 0.5, dilation: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._init_fast(in_channels, out_channels, ensemble_size, fast_init, fast_prior, bias, init_std)
        if self.member_bias is not None:
            bound = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
            nn.init.uniform_(self.member_bias, -bound, bound)

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation)

    def _grouped_forward(self, x: torch.Tensor) -> torch.Tensor:
        return grouped_conv2d(x, self._weights(), self.member_bias, self.stride, self.padding, self.dilation)

    def to_plain(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the weight-averaged parameters (single-model cost)."""
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
            padding=self.padding, dilation=self.dilation, bias=self.member_bias is not None,
            device=self.weight.device, dtype=self.weight.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(self.merged_weight())
            if conv.bias is not None:
                conv.bias.copy_(self.merged_bias())
        return conv


BE_LAYERS = (BatchEnsembleLinear, BatchEnsembleConv2d)


class EnsembleBatchNorm(nn.Module):
    """One BatchNorm per member on a member-major batch: rows ``m·B … (m+1)·B − 1`` go through ``bns[m]``
    (own affine parameters and running statistics), instead of one BatchNorm over all ``M·B`` rows.
    With ``batch_major`` the input is batch-major (row ``b·M + m``) and all members run in one BatchNorm call
    (:func:`.grouped.member_batch_norm`)."""

    batch_major: bool = False

    def __init__(self, bn: nn.Module, ensemble_size: int) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        self.bns = nn.ModuleList(copy.deepcopy(bn) for _ in range(ensemble_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.ensemble_size != 0:
            raise ValueError(f"EnsembleBatchNorm: batch of {x.shape[0]} rows is not a multiple of {self.ensemble_size}")
        if self.batch_major:
            return member_batch_norm(x, list(self.bns))
        return torch.cat([bn(c) for bn, c in zip(self.bns, x.chunk(self.ensemble_size, dim=0))], dim=0)


BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def convert_batchnorm_per_member(model: nn.Module, ensemble_size: int) -> nn.Module:
    """Replace (in place) every ``BatchNorm1d``/``BatchNorm2d`` of ``model`` by an :class:`EnsembleBatchNorm`."""
    for _, child in list(model.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, BN_TYPES):
                setattr(child, attr, EnsembleBatchNorm(sub, ensemble_size))
    return model


@torch.no_grad()
def factorize_ensemble(weights: torch.Tensor, iters: int = 50, eps: float = 1e-12
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank-one BatchEnsemble reconstruction of n member weights ([BE] §2, footnote 1):
    ``min Σ_i ‖W₀ ∘ R_i − W_i‖²`` with ``R_i = r_i s_iᵀ`` (constant over kernel taps), by alternating least squares.

    ``weights``: ``[n, out, in, *taps]``. Returns ``W₀ [out, in, *taps]``, ``r [n, out]``, ``s [n, in]``. Each
    update is the exact minimiser of the objective in one block (so the objective never increases):
    ``W₀ = Σ_i R_i W_i / Σ_i R_i²``; ``r_io = Σ_{j,t} W₀ s_ij W_i / Σ_{j,t} (W₀ s_ij)²``; ``s`` alike. Start:
    ``W₀`` = the member mean, ``r = s = 1``. Computed in float64.
    """
    w = weights.double()
    n, out, inp = w.shape[:3]
    taps = tuple(range(3, w.dim()))
    r = torch.ones(n, out, dtype=w.dtype, device=w.device)
    s = torch.ones(n, inp, dtype=w.dtype, device=w.device)

    def rank_one(r_: torch.Tensor, s_: torch.Tensor) -> torch.Tensor:
        rs = r_[:, :, None] * s_[:, None, :]
        return rs.reshape(*rs.shape, *([1] * len(taps)))

    w0 = w.mean(0)
    for _ in range(iters):
        rr = rank_one(r, s)
        w0 = (rr * w).sum(0) / (rr * rr).sum(0).clamp_min(eps)
        a = w0.unsqueeze(0) * s.reshape(n, 1, inp, *([1] * len(taps)))  # W₀ s_i, broadcast over out
        r = (a * w).sum((2, *taps)) / (a * a).sum((2, *taps)).clamp_min(eps)
        b = w0.unsqueeze(0) * r.reshape(n, out, 1, *([1] * len(taps)))
        s = (b * w).sum((1, *taps)) / (b * b).sum((1, *taps)).clamp_min(eps)
    return w0.to(weights.dtype), r.to(weights.dtype), s.to(weights.dtype)


def factorization_error(weights: torch.Tensor, w0: torch.Tensor, r: torch.Tensor, s: torch.Tensor) -> float:
    """``Σ_i ‖W₀ ∘ r_i s_iᵀ − W_i‖²`` (the objective of :func:`factorize_ensemble`)."""
    rs = r[:, :, None] * s[:, None, :]
    rs = rs.reshape(*rs.shape, *([1] * (weights.dim() - 3)))
    return float(((w0.unsqueeze(0) * rs - weights) ** 2).sum())


def be_layers(model: nn.Module) -> Iterator[_BatchEnsembleMixin]:
    """All BatchEnsemble layers of ``model``."""
    return (mod for mod in model.modules() if isinstance(mod, BE_LAYERS))


def convert_to_batchensemble(
    model: nn.Module, ensemble_size: int, fast_init: FastInit = "random_sign",
    fast_prior: float = 0.0, init_std: float = 0.5, copy_weights: bool = True, member_bn: bool = False,
) -> nn.Module:
    """Return a deep copy of ``model`` with every ``nn.Linear``/``nn.Conv2d`` replaced by its BE version.

    The shared weight ``W`` is copied from the plain layer (``copy_weights``), each member bias starts
    at the plain bias; other modules (BatchNorm, activations, pooling) are kept and shared.  Only
    ``groups == 1`` convolutions with square kernels, equal strides and paddings are supported; other
    layers raise ``ValueError`` naming the layer. ``member_bn``: every BatchNorm becomes one per member
    (:class:`EnsembleBatchNorm`).
    """
    from endist_vision.models.timm_models import check_batchensemble_layers, is_timm_model

    if is_timm_model(model):  # timm: every layer with parameters must be one the conversion covers
        check_batchensemble_layers(model)
    model = copy.deepcopy(model)
    for name, child in list(model.named_modules()):
        for attr, sub in list(child.named_children()):
            new = _convert_layer(sub, f"{name}.{attr}".lstrip("."), ensemble_size, fast_init,
                                 fast_prior, init_std, copy_weights)
            if new is not None:
                setattr(child, attr, new)
    return convert_batchnorm_per_member(model, ensemble_size) if member_bn else model


def _convert_layer(
    sub: nn.Module, path: str, m: int, fast_init: FastInit, fast_prior: float, init_std: float,
    copy_weights: bool,
) -> nn.Module | None:
    if isinstance(sub, nn.Linear):
        new: nn.Module = BatchEnsembleLinear(
            sub.in_features, sub.out_features, m, bias=sub.bias is not None, fast_init=fast_init,
            fast_prior=fast_prior, init_std=init_std,
        )
    elif isinstance(sub, nn.Conv2d):
        ks, st, pd, dl = sub.kernel_size, sub.stride, sub.padding, sub.dilation
        if sub.groups != 1 or ks[0] != ks[1] or st[0] != st[1] or isinstance(pd, str) \
                or pd[0] != pd[1] or dl[0] != dl[1] or sub.padding_mode != "zeros":
            raise ValueError(f"layer {path!r}: only square, ungrouped, zero-padded Conv2d can be converted")
        new = BatchEnsembleConv2d(
            sub.in_channels, sub.out_channels, ks[0], m, stride=st[0], padding=pd[0],
            bias=sub.bias is not None, fast_init=fast_init, fast_prior=fast_prior,
            init_std=init_std, dilation=dl[0],
        )
    else:
        return None
    new = new.to(sub.weight.device, sub.weight.dtype)
    if copy_weights:
        with torch.no_grad():
            new.weight.copy_(sub.weight)
            if sub.bias is not None:
                new.member_bias.copy_(sub.bias.expand(m, -1))
    return new


def replace_with_plain(model: nn.Module) -> nn.Module:
    """Deep copy of ``model`` with every BE layer swapped for its weight-averaged plain layer."""
    model = copy.deepcopy(model)
    for _, child in list(model.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, BE_LAYERS):
                setattr(child, attr, sub.to_plain())
    return model


def split_fast_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(slow, fast)``: fast = every BE ``fast_r``/``fast_s``; slow = all other parameters.

    Used to build separate optimiser groups (own lr multiplier and weight decay for fast weights).
    """
    fast_ids: set[int] = set()
    fast: list[nn.Parameter] = []
    for layer in be_layers(model):
        for p in (layer.fast_r, layer.fast_s):
            if id(p) not in fast_ids:
                fast_ids.add(id(p))
                fast.append(p)
    slow = [p for p in model.parameters() if id(p) not in fast_ids]
    return slow, fast
