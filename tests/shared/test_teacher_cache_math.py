"""shared.teacher_cache: cached teacher records vs the uncached losses of shared.losses (float64).

References are the uncached losses on the full member log-probabilities (exactness at k = V), the
losses' own ``topk=`` merged-class option (k < V at T = 1), and closed-form float64 computations from
the members (temperature interpolation, rest masses, β̂₀ on the grid via proxy_target's definition).
"""

import math

import pytest
import torch

from shared.dirichlet import proxy_target
from shared.losses import dirichlet_nll_loss, ensemble_kd_loss, proxy_dirichlet_loss
from shared.teacher_cache import (
    DEFAULT_TEMPERATURES,
    CacheLayout,
    build_record,
    bytes_per_position,
    cached_dirichlet_nll_loss,
    cached_kd_loss,
    cached_proxy_dirichlet_loss,
    cached_proxy_target,
    targets_at,
)

N, M, V = 7, 3, 11


def _members(spread: float = 0.6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(N, 1, V, generator=g, dtype=torch.float64) * 2.0
    return torch.log_softmax(base + spread * torch.randn(N, M, V, generator=g, dtype=torch.float64), -1)


def _student(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, V, generator=g, dtype=torch.float64) * 1.5).requires_grad_(True)


def _value_and_grad(fn, z):
    value = fn(z)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


def _assert_same(cached, uncached, z, rtol=1e-10):
    v1, g1 = _value_and_grad(cached, z)
    v2, g2 = _value_and_grad(uncached, z)
    torch.testing.assert_close(v1, v2, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=rtol, atol=1e-12)


def _layout(k: int) -> CacheLayout:
    return CacheLayout(V, k, DEFAULT_TEMPERATURES)


def test_kd_and_proxy_exact_at_k_equal_v_and_t1():
    lp, z = _members(), _student()
    rec, lay = build_record(lp, V), _layout(V)
    _assert_same(lambda x: cached_kd_loss(x, rec, lay, 1.0), lambda x: ensemble_kd_loss(x, lp, 1.0), z)
    for direction in ("reverse", "forward"):
        for estimator in ("mkl", "epkl"):
            for param, clip in (("exp", None), ("softplus", None), ("exp", 20.0)):
                _assert_same(
                    lambda x: cached_proxy_dirichlet_loss(x, rec, lay, direction, estimator=estimator, parametrization=param, clip_precision=clip),
                    lambda x: proxy_dirichlet_loss(x, lp, direction, estimator=estimator, parametrization=param, clip_precision=clip),
                    z,
                )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 10.0])
def test_dirichlet_nll_exact_at_k_equal_v_on_the_grid(temperature):
    lp, z = _members(), _student()
    rec, lay = build_record(lp, V), _layout(V)
    for param, clip, offset in (("exp", None, 0.0), ("softplus", None, 1.0), ("exp", 30.0, 1.0)):
        _assert_same(
            lambda x: cached_dirichlet_nll_loss(x, rec, lay, temperature, 0.0, offset, parametrization=param, clip_precision=clip),
            lambda x: dirichlet_nll_loss(x, lp, temperature, 0.0, offset, parametrization=param, clip_precision=clip),
            z,
        )


@pytest.mark.parametrize("temperature", [1.0, 1.5, 4.0])
def test_precision_exact_on_the_grid(temperature):
    lp = _members()
    rec = build_record(lp, 4)
    tg = targets_at(rec, _layout(4), temperature)
    for est, got in (("mkl", tg.precision_mkl), ("epkl", tg.precision_epkl)):
        ref = proxy_target(lp, estimator=est, temperature=temperature).precision
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)


def test_merged_classes_at_t1_equal_the_losses_topk_option():
    lp, z = _members(), _student()
    k = 4
    rec, lay = build_record(lp, k), _layout(k)
    _assert_same(
        lambda x: cached_dirichlet_nll_loss(x, rec, lay, 1.0, 0.0, 1.0, merge_rest=True),
        lambda x: dirichlet_nll_loss(x, lp, 1.0, 0.0, 1.0, topk=k),
        z,
    )
    for direction in ("reverse", "forward"):
        _assert_same(
            lambda x: cached_proxy_dirichlet_loss(x, rec, lay, direction),
            lambda x: proxy_dirichlet_loss(x, lp, direction, topk=k),
            z,
        )


def test_merged_kd_is_the_kl_of_the_merged_distributions():
    lp, z = _members(), _student()
    k, t = 4, 1.0
    rec, lay = build_record(lp, k), _layout(k)

    def merged_kl(x):  # closed form: KL over top-k of p̄ plus one rest class, float64 from the members
        p = lp.exp().mean(-2)
        top = p.topk(k, -1).indices
        rest = torch.ones_like(p, dtype=torch.bool).scatter(-1, top, False)
        pm = torch.cat([p.gather(-1, top), (p * rest).sum(-1, keepdim=True)], -1)
        q = torch.softmax(x, -1)
        qm = torch.cat([q.gather(-1, top), (q * rest).sum(-1, keepdim=True)], -1)
        return (pm * (pm.log() - qm.log())).sum(-1).mean()

    _assert_same(lambda x: cached_kd_loss(x, rec, lay, t), merged_kl, z)
    # merging changes the gradient of the tail classes: the merged loss is not the full one
    assert not torch.allclose(_value_and_grad(merged_kl, z)[1], _value_and_grad(lambda x: ensemble_kd_loss(x, lp), z)[1])


def test_smoothing_exact_when_members_agree():
    one = _members()[:, :1]
    lp = one.expand(N, M, V).clone()
    z = _student()
    for k in (V, 5):
        rec, lay = build_record(lp, k), _layout(k)
        _assert_same(
            lambda x: cached_dirichlet_nll_loss(x, rec, lay, 3.0, 1e-2, 0.0, merge_rest=True),
            lambda x: dirichlet_nll_loss(x, lp, 3.0, 1e-2, 0.0, topk=0 if k == V else k),
            z,
        )


def _exact_tempered(lp, t, k):
    """float64 from the members: (1/M) Σ_m ln π_m(T) over the T = 1 top-k + rest, and ln p̄_T there."""
    pt = torch.log_softmax(lp / t, -1)
    top = (lp.exp().mean(-2)).topk(k, -1).indices
    rest = torch.ones(lp.shape[0], V, dtype=torch.bool).scatter(-1, top, False)
    ninf = torch.tensor(-math.inf, dtype=lp.dtype)
    mean_log = torch.cat([pt.mean(-2).gather(-1, top), torch.logsumexp(torch.where(rest.unsqueeze(-2), pt, ninf), -1).mean(-1, keepdim=True)], -1)
    lm = torch.logsumexp(pt, -2) - math.log(lp.shape[-2])
    log_mean = torch.cat([lm.gather(-1, top), torch.logsumexp(torch.where(rest, lm, ninf), -1, keepdim=True)], -1)
    return mean_log, log_mean


@pytest.mark.parametrize("temperature", [1.1, 1.7, 2.5, 7.0])
def test_between_grid_points_close_to_exact(temperature):
    lp = _members(spread=0.4)
    k = 5
    tg = targets_at(build_record(lp, k), _layout(k), temperature)
    mean_log, log_mean = _exact_tempered(lp, temperature, k)
    # mean log: exact but for the Hermite interpolation of C(s), Rm(s)
    assert float((tg.mean_log - mean_log).abs().max()) < 2e-3
    assert float((tg.log_mean.exp().sum(-1) - 1).abs().max()) < 1e-12  # a distribution
    # p̄_T: rest mass interpolated, top-k by the s² Jensen-gap approximation (a few % at this spread)
    assert float((tg.log_mean.exp() - log_mean.exp()).abs().max()) < 0.03


def test_mean_log_exact_on_grid_points_with_rest_class():
    lp = _members(spread=1.0)
    for t in (2.0, 6.0):
        tg = targets_at(build_record(lp, 5), _layout(5), t)
        mean_log, log_mean = _exact_tempered(lp, t, 5)
        torch.testing.assert_close(tg.mean_log, mean_log, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(tg.log_mean[..., -1], log_mean[..., -1], rtol=1e-12, atol=1e-12)  # rest mass


def test_stored_slopes_make_the_interpolation_accurate():
    lp = _members(spread=0.4)
    t, k = 1.7, 5
    mean_log, _ = _exact_tempered(lp, t, k)
    rec = build_record(lp, k)
    herm = targets_at(rec, _layout(k), t).mean_log
    flat = rec._replace(grid=rec.grid.clone())
    flat.grid[..., [1, 3, 5]] = 0.0  # derivative columns zeroed: no longer the stored slopes
    wrong = targets_at(flat, _layout(k), t).mean_log
    assert float((herm - mean_log).abs().max()) * 10 < float((wrong - mean_log).abs().max())


def test_one_hot_and_extreme_teachers_stay_finite():
    lp = torch.full((N, M, V), -math.inf, dtype=torch.float32)
    lp[:, 0, 0] = 0.0
    lp[:, 1, 1] = 0.0
    lp[:, 2, 0] = 0.0
    z = (torch.randn(N, V) * 1e4).requires_grad_(True)
    for k in (2, V):
        rec, lay = build_record(lp, k), _layout(k)
        assert all(torch.isfinite(x).all() for x in (rec.log_mean, rec.mean_log, rec.grid))
        for t in (1.0, 2.5):
            for fn in (
                lambda x: cached_kd_loss(x, rec, lay, t),
                lambda x: cached_dirichlet_nll_loss(x, rec, lay, t, 1e-4),
                lambda x: cached_dirichlet_nll_loss(x, rec, lay, t, 0.0),
                lambda x: cached_proxy_dirichlet_loss(x, rec, lay, "reverse", temperature=t),
                lambda x: cached_proxy_dirichlet_loss(x, rec, lay, "forward", temperature=t),
            ):
                value, grad = _value_and_grad(fn, z)
                assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_storage_and_validation():
    lp = _members().float()
    rec = build_record(lp, 4, value_dtype=torch.float16)
    assert rec.index.dtype == torch.int32 and rec.log_mean.dtype == torch.float16 and rec.grid.dtype == torch.float32
    nbytes = sum(x[0].numel() * x.element_size() for x in rec)
    assert nbytes == bytes_per_position(4, len(DEFAULT_TEMPERATURES), torch.float16)
    with pytest.raises(ValueError, match=r"outside the cache's temperature grid \[1.0, 10.0\]"):
        targets_at(rec, _layout(4), 12.0)
    with pytest.raises(ValueError, match="topk must be in"):
        build_record(lp, V + 1)
    with pytest.raises(ValueError, match="do not match"):
        cached_kd_loss(torch.zeros(N, V + 1), rec, _layout(4))
    beta = cached_proxy_target(rec, _layout(4), 1.0, "mkl", 1.0).beta
    assert beta.shape == (N, 5) and float(beta[:, -1].min()) >= V - 4  # rest: (V − k) offsets at least


@pytest.mark.parametrize("temperature, smoothing", [(1.0, 0.0), (2.0, 1e-4), (4.0, 1e-2), (1.0, 1e-2)])
def test_full_dirichlet_nll_differs_only_by_the_target_replacements(temperature, smoothing):
    """k < V, merge_rest=False: L_cached = L + Σ_j (α_j − 1)(t_j − t_j^cached) with the exact per-class targets
    t_j (members smoothed) and t^cached = the tail average t̄ on every tail class (exact γ-smoothed average),
    the smoothed mean log on the top-k; the difference is Σ_tail α_j (t_j − t̄) for γ = 0."""
    lp, z = _members(spread=0.8), _student()
    k = 4
    layout_gamma = smoothing if smoothing else 1e-4
    rec = build_record(lp, k, smoothing=layout_gamma)
    lay = CacheLayout(V, k, DEFAULT_TEMPERATURES, layout_gamma)
    pt = torch.log_softmax(lp / temperature, -1)
    floor = torch.tensor(math.log(smoothing / V) if smoothing else -math.inf, dtype=pt.dtype)
    t = torch.logaddexp(pt + math.log1p(-smoothing), floor).mean(-2)  # exact per-class targets, members smoothed
    top = lp.exp().mean(-2).topk(k, -1).indices
    tail = torch.ones(N, V, dtype=torch.bool).scatter(-1, top, False)
    t_bar = (t * tail).sum(-1, keepdim=True) / (V - k)
    t_cached = torch.where(tail, t_bar, torch.logaddexp(pt.mean(-2) + math.log1p(-smoothing), floor))

    def correction(x):
        alpha = torch.exp(x / temperature)
        return ((alpha - 1.0) * (t - t_cached)).sum()

    _assert_same(
        lambda x: cached_dirichlet_nll_loss(x, rec, lay, temperature, smoothing, 0.0, reduction="sum"),
        lambda x: dirichlet_nll_loss(x, lp, temperature, smoothing, 0.0, reduction="sum") + correction(x),
        z,
        rtol=1e-9,
    )


def test_half_precision_students_and_fp16_records_stay_finite():
    lp = torch.full((N, M, V), -math.inf, dtype=torch.float32)
    lp[:, :, 0] = 0.0  # unanimous one-hot members: β̂₀ capped, ln 0 everywhere else
    g = torch.Generator().manual_seed(5)
    for dtype in (torch.float16, torch.bfloat16):
        z = (torch.randn(N, V, generator=g) * 60).to(dtype).requires_grad_(True)  # near the half range's logit clamp
        for k in (3, V):
            rec, lay = build_record(lp, k, value_dtype=torch.float16), _layout(k)
            for fn in (
                lambda x: cached_kd_loss(x, rec, lay, 2.0),
                lambda x: cached_dirichlet_nll_loss(x, rec, lay, 2.0, 1e-4),
                lambda x: cached_proxy_dirichlet_loss(x, rec, lay, "reverse"),
                lambda x: cached_proxy_dirichlet_loss(x, rec, lay, "forward"),
            ):
                value, grad = _value_and_grad(fn, z)
                assert value.dtype == torch.float32 and torch.isfinite(value), (dtype, k)
                assert grad.dtype == dtype and not torch.isnan(grad.float()).any(), (dtype, k)
                # a half input's gradient may overflow to ±inf (shared.losses' documented exception, GradScaler's
                # case); computed on the same values in float32 it is finite
                _, grad32 = _value_and_grad(fn, z.detach().float().requires_grad_(True))
                assert torch.isfinite(grad32).all(), (dtype, k)
