"""Compact cache of a teacher ensemble's outputs: what EnD, EnD² and Proxy-EnD² need, per position.

Running M teachers on every student batch costs M forward passes per update, every epoch. The
losses of :mod:`shared.losses` need far less than the members' full ``[M, V]`` log-probabilities:
this module compresses them, once, into a :class:`TeacherCacheRecord` per position and rebuilds the
losses' inputs from it at any temperature T of a fixed grid (and, approximately, between grid points).

API: :func:`build_record` (members' log-probs ``[..., M, V]`` → :class:`TeacherCacheRecord`), a
:class:`CacheLayout` (V, k, grid temperatures, γ: what a cache's manifest stores once), :func:`targets_at`
(the rebuilt targets at T), and the cached losses :func:`cached_kd_loss` (EnD),
:func:`cached_dirichlet_nll_loss` (EnD²), :func:`cached_proxy_dirichlet_loss` with :func:`cached_proxy_target`
(Proxy), each taking ``(student_logits [..., V], record, layout, ...)`` with the options of its
:mod:`shared.losses` counterpart; :func:`bytes_per_position` for sizing.

Record (per position; ``k`` = ``topk`` classes, ``G`` = grid temperatures, M-independent size)
------------------------------------------------------------------------------------------------
``index`` ``[k]`` int32
    the k classes of largest ensemble mean p̄ = (1/M) Σ_m p_m at T = 1, in decreasing order of p̄.
``log_mean`` ``[k + 1]``
    ln p̄_j on those classes, then ln Σ_rest p̄ (the merged "rest" class, all other V − k classes).
``mean_log`` ``[k + 1]``
    (1/M) Σ_m ln p_mj on those classes, then (1/M) Σ_m ln Σ_rest p_m (the members' merged rest class).
``grid`` ``[G, 12]`` (one row per grid temperature T_g, s_g = 1 / T_g; :data:`GRID_COLUMNS`)
    the per-position scalars that need the whole vocabulary, with their s-derivatives::

        C(s)    = (1/M) Σ_m ln Σ_j p_mj^s                 (LSE of the tempered member, all classes)
        Rm(s)   = (1/M) Σ_m ln Σ_rest p_mj^s              (the same over the rest classes)
        lnR(s)  = ln (1/M) Σ_m Σ_rest π_mj(s)             (rest mass of p̄_T, π_m(s) = softmax(s ln p_m))
        ln β̂₀(s), estimators "mkl" and "epkl"            ([Proxy] eq. 17, by shared.dirichlet.proxy_target
                                                           on the full members: exact at every grid T)
        TU(s)   = (1/(V−k)) Σ_rest (1/M) Σ_m ln π_mj(s)   (EnD²'s tail term: the tail classes' average target)
        TS(s)   = the same with central smoothing γ, ln((1 − γ) π_mj(s) + γ/V) (γ = CacheLayout.smoothing)

    and dC/ds, dRm/ds, dlnR/ds, dTU/ds, dTS/ds (closed forms: E_{π_m(s)}[ln p_m] etc.); the rest
    columns are 0 when k = V (no rest class).

Rebuilding at temperature T (s = 1/T; :func:`targets_at`)
---------------------------------------------------------
- **EnD², the members' mean log-probability** ([EnD2] eq. 8 at T): (1/M) Σ_m ln π_mj(s) =
  s · mean_log_j − C(s) on the top-k, and Rm(s) − C(s) for the rest class. **Exact at every grid T**;
  between grid points C and Rm are cubic-Hermite interpolated in s (value and derivative stored).
  Central smoothing γ ([EnD2] eq. 12) is applied to that *mean* log, ln((1 − γ)·e^{mean_log} + γ/V)
  (rest class: γ·(V − k)/V), where the loss smooths every member before averaging: **exact for γ = 0 or
  where the members agree on a class**, otherwise a geometric-mean approximation (measured by
  ``scripts/benchmarks/teacher_cache_error.py``).
- **EnD and Proxy, the mean p̄_T** = (1/M) Σ_m π_m(s): exact at T = 1. At T ≠ 1 its rest mass R(s)
  is exact at grid points; inside the top-k, ln p̄_T,j ≈ s·mean_log_j − C(s) + s²·(log_mean_j − mean_log_j)
  (the members' tempered mean log plus their Jensen gap, which grows like the members' spread squared,
  ∝ s², and is exact at s = 1 and s → 0), renormalised so the top-k holds 1 − R(s).
- **Proxy precision** β̂₀(T): ln β̂₀ on the grid, linear in s between grid points (exact at grid T).
- **Rest classes** (k < V): EnD and Proxy run on k + 1 classes, the student's logits/α on the rest
  classes merged as the losses' own ``topk=`` option does (α_rest = Σ_rest α_j, the Dirichlet aggregation
  property; for EnD q_rest = Σ_rest q_j, i.e. the teachers' tail mass spread like the student's tail).
  EnD² keeps all V classes by default and gives every tail class the tail average TU/TS(s) as its target
  (the NLL's tail gradient α_j(ψ(α_j) − ψ(α₀) − t_j) is dominated by ψ(α_j), which stays exact;
  merging instead would drop it and change the loss entirely); ``merge_rest=True`` merges like ``topk=k``.
  At T = 1 the merged losses equal ``dirichlet_nll_loss(topk=k)`` (γ = 0) / ``proxy_dirichlet_loss(topk=k)``.

Where it is exact (k = V)
-------------------------
Loss and gradient equal the uncached :func:`shared.losses.ensemble_kd_loss` at T = 1,
:func:`shared.losses.dirichlet_nll_loss` with smoothing 0 at every grid T, and
:func:`shared.losses.proxy_dirichlet_loss` at T = 1 (at other grid T its β̂₀ is exact but p̄_T is the
approximation above). ``tests/shared/test_teacher_cache_math.py`` checks all of these in float64.

Storage (bytes per position)
----------------------------
``index`` int32 (4k), ``log_mean``/``mean_log`` in ``value_dtype`` (float32: 8(k + 1); float16:
4(k + 1)), ``grid`` float32 (48 G). With k = 64, G = 8: 1160 bytes (float32 values) or 900 (float16);
a T = 1-only grid (G = 1, e.g. EnD/Proxy without annealing): 824 / 564 (:func:`bytes_per_position`).
float16 ln-values have a spacing of 2⁻⁶ ≈ 0.016 at |ln p| ∈ [8, 16) and 0.03 beyond 16, i.e. a 1–3 %
relative error of small probabilities and of the EnD² target's low classes, so float32 is the default;
the error benchmark reports both. The grid scalars are kept in float32 always (C(s) ~ −s·ln p is
subtracted from s·mean_log: float16 would lose ~0.01 absolute in every class).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch

from shared._tensor import check_positive_finite, check_reduction, compute_dtype, reduce_loss, upcast
from shared.dirichlet import MAX_PRECISION, MIN_CONCENTRATION, ProxyTarget, log_normalizer, proxy_target
from shared.losses import _DirichletKLToTarget, ensemble_kd_loss, merge_classes
from shared.uncertainty import alphas_from_logits

#: format version of the record (bump when a field's meaning changes)
RECORD_VERSION = 1
#: default temperature grid: the annealing range of [EnD2] App. A.2 (T0 = 10 → 1), denser near T = 1
DEFAULT_TEMPERATURES: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0)
#: columns of ``TeacherCacheRecord.grid``
GRID_COLUMNS: tuple[str, ...] = (
    "C", "dC", "Rm", "dRm", "lnR", "dlnR", "ln_beta0_mkl", "ln_beta0_epkl", "TU", "dTU", "TS", "dTS"
)
_C, _DC, _RM, _DRM, _LNR, _DLNR, _B_MKL, _B_EPKL, _TU, _DTU, _TS, _DTS = range(12)
NUM_GRID_COLUMNS = len(GRID_COLUMNS)
#: default central smoothing γ baked into the tail column TS ([EnD2] eq. 12; the seq criterion's default)
DEFAULT_SMOOTHING = 1e-4
#: finite stand-in for ln 0 (a class or rest mass no member supports): exp() is exactly 0 in float32/64
LOG_FLOOR = -1e4
#: rows per chunk of [rows, M, V] while building (about this many elements)
CHUNK_ELEMENTS = 1 << 22


class TeacherCacheRecord(NamedTuple):
    """Cached teacher outputs of ``[...]`` positions (see the module docstring for the fields)."""

    index: torch.Tensor  # [..., k] int32/int64
    log_mean: torch.Tensor  # [..., k + 1]
    mean_log: torch.Tensor  # [..., k + 1]
    grid: torch.Tensor  # [..., G, NUM_GRID_COLUMNS]


class CacheLayout(NamedTuple):
    """What a record does not store per position: vocabulary size V, k, the grid temperatures (ascending)
    and the central smoothing γ of the tail column TS."""

    num_classes: int
    topk: int
    temperatures: tuple[float, ...]
    smoothing: float = DEFAULT_SMOOTHING

    @property
    def has_rest(self) -> bool:
        return self.topk < self.num_classes


class CachedTargets(NamedTuple):
    """The losses' inputs at one temperature, over the k (+ 1 rest, when k < V) merged classes.

    ``log_mean``: ln p̄_T; ``mean_log``: (1/M) Σ_m ln π_m(T) (unsmoothed); ``precision_mkl``/``precision_epkl``:
    β̂₀(T) (``[...]``); ``tail_mean_log`` / ``tail_mean_log_smoothed``: the average over the V − k tail classes
    of (1/M) Σ_m ln π_mj(T), unsmoothed and smoothed with the layout's γ (``[...]``; 0 when k = V).
    """

    index: torch.Tensor
    log_mean: torch.Tensor
    mean_log: torch.Tensor
    precision_mkl: torch.Tensor
    precision_epkl: torch.Tensor
    tail_mean_log: torch.Tensor
    tail_mean_log_smoothed: torch.Tensor


def check_layout(layout: CacheLayout) -> CacheLayout:
    """``layout`` with the temperatures as a sorted float tuple (ValueError on impossible values)."""
    v, k = int(layout.num_classes), int(layout.topk)
    if not 1 <= k <= v:
        raise ValueError(f"topk must be in [1, V] = [1, {v}], got {k}")
    temps = tuple(sorted(float(check_positive_finite(t, "temperature")) for t in layout.temperatures))
    if not temps or len(set(temps)) != len(temps):
        raise ValueError(f"the temperature grid must hold distinct values, got {layout.temperatures!r}")
    if not 0.0 <= float(layout.smoothing) < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {layout.smoothing}")
    return CacheLayout(v, k, temps, float(layout.smoothing))


def bytes_per_position(topk: int, num_temperatures: int, value_dtype: torch.dtype = torch.float32) -> int:
    """Storage of one record: int32 index, two ``[k + 1]`` value arrays, float32 ``[G, NUM_GRID_COLUMNS]`` grid."""
    return 4 * topk + 2 * (topk + 1) * torch.empty((), dtype=value_dtype).element_size() + 4 * NUM_GRID_COLUMNS * num_temperatures


@torch.no_grad()
def build_record(
    log_probs: torch.Tensor,
    topk: int,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    value_dtype: Optional[torch.dtype] = None,
    smoothing: float = DEFAULT_SMOOTHING,
) -> TeacherCacheRecord:
    """Compress member log-probabilities ``[..., M, V]`` (T = 1) into a :class:`TeacherCacheRecord`.

    Computed in float32 (float64 inputs in float64) in row chunks; ``value_dtype`` (default: that
    compute dtype) is the dtype of ``log_mean``/``mean_log``; ``grid`` stays in the compute dtype.
    """
    if log_probs.dim() < 2:
        raise ValueError(f"log_probs must have shape [..., M, V], got {tuple(log_probs.shape)}")
    m, v = log_probs.shape[-2], log_probs.shape[-1]
    layout = check_layout(CacheLayout(v, topk, tuple(temperatures), smoothing))
    k = layout.topk
    dtype = compute_dtype(log_probs)
    lead = log_probs.shape[:-2]
    flat = log_probs.reshape(-1, m, v)
    n = flat.shape[0]
    rows = max(1, CHUNK_ELEMENTS // max(1, m * v))
    dev = log_probs.device
    index = torch.empty(n, k, dtype=torch.int32, device=dev)
    log_mean = torch.empty(n, k + 1, dtype=dtype, device=dev)
    mean_log = torch.empty(n, k + 1, dtype=dtype, device=dev)
    grid = torch.empty(n, len(layout.temperatures), NUM_GRID_COLUMNS, dtype=dtype, device=dev)
    n_tail = v - k
    gamma = layout.smoothing
    zero = torch.zeros((), dtype=dtype, device=dev)
    neg_inf = torch.full((), -math.inf, dtype=dtype, device=dev)
    for s0 in range(0, n, rows):
        lp = upcast(flat[s0 : s0 + rows], dtype)
        lm = torch.logsumexp(lp, dim=-2) - math.log(m)  # ln p̄ [r, V]
        top = lm.topk(k, dim=-1, sorted=True).indices
        rest = torch.ones_like(lm, dtype=torch.bool).scatter_(-1, top, False)  # [r, V]
        index[s0 : s0 + rows] = top.to(torch.int32)
        a = lp.mean(-2)
        log_mean[s0 : s0 + rows, :k] = lm.gather(-1, top)
        mean_log[s0 : s0 + rows, :k] = a.gather(-1, top)
        lp_rest = torch.where(rest.unsqueeze(-2), lp, neg_inf)  # [r, M, V]
        log_mean[s0 : s0 + rows, k] = torch.logsumexp(torch.where(rest, lm, neg_inf), dim=-1)
        mean_log[s0 : s0 + rows, k] = torch.logsumexp(lp_rest, dim=-1).mean(-1)
        # T-independent pieces: finite log-probs for the products (π = 0 exactly where ln p = −inf), the rest mask
        lp_fin = torch.where(lp > -math.inf, lp, zero)
        tail = rest.unsqueeze(-2)  # [r, 1, V]
        if layout.has_rest:
            tail_f = tail.to(dtype)
            tail_lp = torch.where(tail, lp, zero).sum(-1)  # Σ_rest ln p_m (−inf if a rest class is impossible)
            tail_lp_fin = (lp_fin * tail_f).sum(-1)
            tail_fin = ((lp > -math.inf) & tail).sum(-1).to(dtype)
        for g, t in enumerate(layout.temperatures):
            s = 1.0 / t
            x = lp * s
            l_all = torch.logsumexp(x, dim=-1)  # [r, M]
            log_pi = x - l_all.unsqueeze(-1)  # ln π_m(s)
            pi = log_pi.exp()
            d_all = (pi * lp_fin).sum(-1)  # E_π[ln p] = dL/ds
            out = grid[s0 : s0 + rows, g]
            out[:, _C] = l_all.mean(-1)
            out[:, _DC] = d_all.mean(-1)
            if layout.has_rest:
                x_rest = torch.where(tail, x, neg_inf)
                l_rest = torch.logsumexp(x_rest, dim=-1)  # [r, M], −inf when no rest class has mass
                d_rest = (torch.exp(x_rest - l_rest.unsqueeze(-1)).nan_to_num_(0.0) * lp_fin).sum(-1)
                out[:, _RM] = l_rest.mean(-1)
                out[:, _DRM] = d_rest.mean(-1)
                log_share = l_rest - l_all  # ln Σ_rest π_m(s)
                out[:, _LNR] = torch.logsumexp(log_share, dim=-1) - math.log(m)
                w = torch.softmax(log_share, dim=-1).nan_to_num_(0.0)
                out[:, _DLNR] = (w * (d_rest - d_all)).sum(-1)
                # tail classes' mean of the members' mean log, unsmoothed (TU) and smoothed with γ (TS), and d/ds
                out[:, _TU] = (s * tail_lp - n_tail * l_all).sum(-1) / (m * n_tail)
                out[:, _DTU] = (tail_lp_fin - tail_fin * d_all).sum(-1) / (m * n_tail)
                if gamma > 0.0:
                    u = pi.mul((1.0 - gamma)).add_(gamma / v)  # smoothed probability (π underflows only far below γ/V)
                    out[:, _TS] = (u.log() * tail_f).sum((-1, -2)) / (m * n_tail)
                    wt = u.reciprocal_().mul_(-gamma / v).add_(1.0).mul_(tail_f)  # share of (1 − γ)π in it, on the tail
                    out[:, _DTS] = ((wt * lp_fin).sum(-1) - wt.sum(-1) * d_all).sum(-1) / (m * n_tail)
                    del u, wt
                else:
                    out[:, _TS], out[:, _DTS] = out[:, _TU], out[:, _DTU]
            else:
                out[:, _RM : _DLNR + 1] = 0.0  # no rest class (k = V): unused
                out[:, _TU:] = 0.0
            del pi
            for col, estimator in ((_B_MKL, "mkl"), (_B_EPKL, "epkl")):  # on the tempered members: no second log_softmax
                prec = proxy_target(log_pi, estimator=estimator, offset=0.0).precision
                out[:, col] = prec.clamp_min(torch.finfo(dtype).tiny).log()
    floor = torch.full((), LOG_FLOOR, dtype=dtype, device=dev)
    log_mean = torch.maximum(log_mean.nan_to_num(nan=LOG_FLOOR), floor)
    mean_log = torch.maximum(mean_log.nan_to_num(nan=LOG_FLOOR), floor)
    grid = torch.maximum(grid.nan_to_num(nan=LOG_FLOOR), floor)
    vd = dtype if value_dtype is None else value_dtype
    g_count = len(layout.temperatures)
    return TeacherCacheRecord(
        index.reshape(lead + (k,)),
        log_mean.to(vd).reshape(lead + (k + 1,)),
        mean_log.to(vd).reshape(lead + (k + 1,)),
        grid.reshape(lead + (g_count, NUM_GRID_COLUMNS)),
    )


def _grid_position(temperatures: tuple[float, ...], temperature: float) -> tuple[int, float, float]:
    """(i, t, h): the grid interval [T_i, T_{i+1}] holding ``temperature``, t ∈ [0, 1) along it in s = 1/T, h = Δs."""
    if temperature in temperatures:
        return temperatures.index(temperature), 0.0, 0.0
    lo, hi = temperatures[0], temperatures[-1]
    if not lo <= temperature <= hi:
        raise ValueError(
            f"temperature {temperature} is outside the cache's temperature grid [{lo}, {hi}] "
            f"(grid: {', '.join(f'{t:g}' for t in temperatures)})"
        )
    i = max(j for j, t in enumerate(temperatures) if t < temperature)
    s_i, s_j = 1.0 / temperatures[i], 1.0 / temperatures[i + 1]
    h = s_j - s_i
    return i, (1.0 / temperature - s_i) / h, h


def _hermite(grid: torch.Tensor, col: int, dcol: int, i: int, t: float, h: float) -> torch.Tensor:
    """Cubic Hermite interpolation in s of ``grid[..., :, col]`` with derivative column ``dcol``."""
    if t == 0.0:
        return grid[..., i, col]
    t2, t3 = t * t, t * t * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    return (
        h00 * grid[..., i, col] + h10 * h * grid[..., i, dcol] + h01 * grid[..., i + 1, col] + h11 * h * grid[..., i + 1, dcol]
    )


def _linear(grid: torch.Tensor, col: int, i: int, t: float) -> torch.Tensor:
    if t == 0.0:
        return grid[..., i, col]
    return (1.0 - t) * grid[..., i, col] + t * grid[..., i + 1, col]


def targets_at(record: TeacherCacheRecord, layout: CacheLayout, temperature: float = 1.0) -> CachedTargets:
    """Rebuild ln p̄_T, (1/M) Σ_m ln π_m(T) and β̂₀(T) over the k (+ rest) classes (see the module docstring).

    Values are float32 (float64 when the record is). Without a rest class (k = V) the last column is dropped.
    """
    layout = check_layout(layout)
    temperature = check_positive_finite(temperature, "temperature")
    dtype = compute_dtype(record.log_mean, record.grid)
    lm, ml, grid = upcast(record.log_mean, dtype), upcast(record.mean_log, dtype), upcast(record.grid, dtype)
    k = layout.topk
    if grid.shape[-2] != len(layout.temperatures) or lm.shape[-1] != k + 1 or record.index.shape[-1] != k:
        raise ValueError(
            f"record (index {tuple(record.index.shape)}, values {tuple(lm.shape)}, grid {tuple(grid.shape)}) does not match "
            f"the layout k = {k}, {len(layout.temperatures)} temperatures"
        )
    i, t, h = _grid_position(layout.temperatures, temperature)
    prec = [_linear(grid, col, i, t).exp().clamp(0.0, MAX_PRECISION) for col in (_B_MKL, _B_EPKL)]
    tails = [_hermite(grid, col, dcol, i, t, h).clamp_max(0.0) for col, dcol in ((_TU, _DTU), (_TS, _DTS))]
    if temperature == 1.0:
        log_mean, mean_log = lm, ml
    else:
        s = 1.0 / temperature
        c = _hermite(grid, _C, _DC, i, t, h).unsqueeze(-1)
        mean_top = s * ml[..., :k] - c
        approx = mean_top + (s * s) * (lm[..., :k] - ml[..., :k])
        if layout.has_rest:
            ln_rest = _hermite(grid, _LNR, _DLNR, i, t, h).clamp_max(0.0).unsqueeze(-1)
            top_mass = torch.log(-torch.expm1(ln_rest))  # ln(1 − R(s))
            log_mean = torch.cat([approx - torch.logsumexp(approx, -1, keepdim=True) + top_mass, ln_rest], -1)
            rest_mean = _hermite(grid, _RM, _DRM, i, t, h).unsqueeze(-1) - c
            mean_log = torch.cat([mean_top, rest_mean.clamp_max(0.0)], -1)
        else:
            log_mean = approx - torch.logsumexp(approx, -1, keepdim=True)
            mean_log = mean_top
    if not layout.has_rest:
        log_mean, mean_log = log_mean[..., :k], mean_log[..., :k]
    return CachedTargets(record.index.long(), log_mean, mean_log, prec[0], prec[1], tails[0], tails[1])


def _merged_student(x: torch.Tensor, index: torch.Tensor, has_rest: bool, log_space: bool) -> torch.Tensor:
    """Student values ``[..., V]`` on the cached classes, the rest merged (sum, or logsumexp when ``log_space``)."""
    if not has_rest:
        return x.gather(-1, index)
    if not log_space:
        return merge_classes(x, index)
    rest = torch.ones(x.shape, dtype=torch.bool, device=x.device).scatter_(-1, index, False)
    tail = torch.logsumexp(torch.where(rest, x, torch.full((), -math.inf, dtype=x.dtype, device=x.device)), -1, keepdim=True)
    return torch.cat([x.gather(-1, index), tail], -1)


def _check_student(student_logits: torch.Tensor, record: TeacherCacheRecord, layout: CacheLayout) -> CacheLayout:
    layout = check_layout(layout)
    if student_logits.shape[-1] != layout.num_classes or student_logits.shape[:-1] != record.index.shape[:-1]:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} do not match the cached positions "
            f"{tuple(record.index.shape[:-1])} over V = {layout.num_classes} classes"
        )
    return layout


def cached_kd_loss(
    student_logits: torch.Tensor,
    record: TeacherCacheRecord,
    layout: CacheLayout,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """EnD from the cache: T² · KL(p̄_T ‖ q_T) over the k cached classes + the merged rest
    (q_rest = Σ_rest q_j), by :func:`shared.losses.ensemble_kd_loss` ([EnD2] eq. 5)."""
    layout = _check_student(student_logits, record, layout)
    check_reduction(reduction)
    tg = targets_at(record, layout, temperature)
    dtype = compute_dtype(student_logits, tg.log_mean)
    z = upcast(student_logits, dtype)
    # log_softmax(z'/T) must be the merged q_T: the rest logit is T·LSE_rest(z/T)
    zm = _merged_student(z / temperature, tg.index, layout.has_rest, log_space=True) * temperature
    teacher = (temperature * tg.log_mean.to(dtype)).unsqueeze(-2)  # ensemble_kd_loss tempers: softmax(T·ln p̄_T / T)
    return ensemble_kd_loss(zm, teacher, temperature=temperature, reduction=reduction)


def cached_mean_log_probs(targets: CachedTargets, layout: CacheLayout, smoothing: float = 0.0) -> torch.Tensor:
    """EnD²'s target statistic (1/M) Σ_m ln π̃_m over the merged classes, with central smoothing γ
    applied to the mean log (module docstring); γ = 0: ln 0 read as the smallest normal float, as in
    :func:`shared.losses.dirichlet_nll_loss`."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    ml = targets.mean_log
    v, k = layout.num_classes, layout.topk
    if smoothing == 0.0:
        return ml.clamp_min(math.log(torch.finfo(ml.dtype).tiny))
    floor = torch.full(ml.shape, math.log(smoothing / v), dtype=ml.dtype, device=ml.device)
    if layout.has_rest:
        floor[..., k] = math.log(smoothing * (v - k) / v)
    return torch.logaddexp(ml + math.log1p(-smoothing), floor)


def cached_dirichlet_nll_loss(
    student_logits: torch.Tensor,
    record: TeacherCacheRecord,
    layout: CacheLayout,
    temperature: float = 1.0,
    smoothing: float = 1e-4,
    model_offset: float = 0.0,
    reduction: str = "mean",
    parametrization: str = "exp",
    clip_precision: Optional[float] = None,
    merge_rest: bool = False,
) -> torch.Tensor:
    """EnD² from the cache ([EnD2] eq. 8, 11, 12), α = exp(z / T) + model_offset
    (:func:`shared.uncertainty.alphas_from_logits`), the expression of :func:`shared.losses.dirichlet_nll_loss`::

        L = ln B(α) − Σ_j (α_j − 1) · t_j,   t_j = (1/M) Σ_m ln π̃_mj(T)

    - ``merge_rest=False`` (default; the full loss, ``topk=0``): all V classes, t_j from the cache on the
      top-k and, on every tail class, the tail average t̄ (grid columns TU/TS), so
      Σ_j (α_j − 1) t_j = t̄ (α₀ − V) + Σ_top (α_j − 1)(t_j − t̄): exact but for Σ_tail α_j (t_j − t̄), which
      is small where the student's tail concentrations are. The smoothed tail is exact for γ = the
      layout's γ (or 0); another γ is applied to the tail average.
    - ``merge_rest=True``: the k classes + the merged rest (α_rest = Σ_rest α_j), the loss's ``topk=k``.
    """
    layout = _check_student(student_logits, record, layout)
    check_reduction(reduction)
    temperature = check_positive_finite(temperature, "temperature")
    model_offset = check_positive_finite(model_offset, "model_offset", allow_zero=True)
    tg = targets_at(record, layout, temperature)
    dtype = compute_dtype(student_logits, tg.mean_log)
    with torch.no_grad():
        target = upcast(cached_mean_log_probs(tg, layout, smoothing), dtype)
    alpha = alphas_from_logits(upcast(student_logits, dtype) / temperature, offset=model_offset,
                               parametrization=parametrization, clip_precision=clip_precision)
    if merge_rest or not layout.has_rest:
        alpha = _merged_student(alpha, tg.index, layout.has_rest, log_space=False)
        nll = log_normalizer(alpha) - ((alpha - 1.0) * target).sum(-1)
        return reduce_loss(nll, reduction)
    with torch.no_grad():
        tail = upcast(_tail_target(tg, layout, smoothing), dtype).unsqueeze(-1)
    k, v = layout.topk, layout.num_classes
    top_alpha = alpha.gather(-1, tg.index)
    linear = tail.squeeze(-1) * (alpha.sum(-1) - v) + ((top_alpha - 1.0) * (target[..., :k] - tail)).sum(-1)
    return reduce_loss(log_normalizer(alpha) - linear, reduction)


def _tail_target(targets: CachedTargets, layout: CacheLayout, smoothing: float) -> torch.Tensor:
    """t̄: the tail classes' average (1/M) Σ_m ln π̃_mj, smoothed with ``smoothing`` (see cached_dirichlet_nll_loss)."""
    if smoothing == 0.0:
        tail = targets.tail_mean_log
        return tail.clamp_min(math.log(torch.finfo(tail.dtype).tiny))
    if smoothing == layout.smoothing:
        return targets.tail_mean_log_smoothed
    floor = torch.full((), math.log(smoothing / layout.num_classes), dtype=targets.tail_mean_log.dtype)
    return torch.logaddexp(targets.tail_mean_log + math.log1p(-smoothing), floor)


def cached_proxy_target(
    record: TeacherCacheRecord, layout: CacheLayout, temperature: float = 1.0, estimator: str = "mkl", offset: float = 1.0
) -> ProxyTarget:
    """The Proxy-Dirichlet target ([Proxy] eq. 17) over the merged classes: β_j = p̄_T,j · β̂₀(T) + offset,
    β_rest = R(T) · β̂₀(T) + (V − k) · offset (the sum of the rest classes' β), floored at MIN_CONCENTRATION."""
    if estimator not in ("mkl", "epkl"):
        raise ValueError(f"estimator must be 'mkl' or 'epkl', got {estimator!r}")
    offset = check_positive_finite(offset, "offset", allow_zero=True)
    layout = check_layout(layout)
    tg = targets_at(record, layout, temperature)
    prec = tg.precision_mkl if estimator == "mkl" else tg.precision_epkl
    offsets = torch.full(tg.log_mean.shape[-1:], offset, dtype=tg.log_mean.dtype, device=tg.log_mean.device)
    if layout.has_rest:
        offsets[-1] = offset * (layout.num_classes - layout.topk)
    beta = (tg.log_mean.exp() * prec.unsqueeze(-1) + offsets).clamp_min(MIN_CONCENTRATION)
    return ProxyTarget(beta, prec)


def cached_proxy_dirichlet_loss(
    student_logits: torch.Tensor,
    record: TeacherCacheRecord,
    layout: CacheLayout,
    direction: str = "reverse",
    model_offset: float = 1.0,
    target_offset: float = 1.0,
    estimator: str = "mkl",
    normalize: bool = True,
    temperature: float = 1.0,
    reduction: str = "mean",
    parametrization: str = "exp",
    clip_precision: Optional[float] = None,
    target: Optional[ProxyTarget] = None,
) -> torch.Tensor:
    """Proxy-Dirichlet distillation from the cache ([Proxy] eq. 13–17): the KL of
    :func:`shared.losses.proxy_dirichlet_loss` (β-only constants dropped, same analytic gradient)
    between the student's merged Dir(α') and :func:`cached_proxy_target`, divided by max(β̂₀, 1)
    when ``normalize``. ``target=`` reuses a target already rebuilt at this temperature."""
    if direction not in ("reverse", "forward"):
        raise ValueError(f"direction must be 'reverse' or 'forward', got {direction!r}")
    layout = _check_student(student_logits, record, layout)
    check_reduction(reduction)
    temperature = check_positive_finite(temperature, "temperature")
    model_offset = check_positive_finite(model_offset, "model_offset", allow_zero=True)
    if target is None:
        target = cached_proxy_target(record, layout, temperature, estimator, target_offset)
    dtype = compute_dtype(student_logits, target.beta)
    alpha = alphas_from_logits(upcast(student_logits, dtype) / temperature, offset=model_offset,
                               parametrization=parametrization, clip_precision=clip_precision)
    alpha = _merged_student(alpha, record.index.long(), layout.has_rest, log_space=False)
    kk = alpha.shape[-1]
    beta = upcast(target.beta, dtype).detach()
    value = _DirichletKLToTarget.apply(alpha.reshape(-1, kk), beta.reshape(-1, kk), 0.0, direction == "reverse", True)
    value = value.reshape(alpha.shape[:-1])
    if normalize:
        value = value / upcast(target.precision, dtype).detach().clamp_min(1.0)
    return reduce_loss(value, reduction)
