"""Masked rows, identical teachers, empty inputs and file modes of ``shared`` (issue 11, items 4, 5, 6, 10)."""

from __future__ import annotations

import logging
import math
import os
import stat

import numpy as np
import pytest
import torch

from shared import metrics
import shared.dirichlet as dirichlet
from shared.dirichlet import proxy_target
from shared.io import atomic_savefig, atomic_torch_save, atomic_write_json, atomic_write_text
from shared.losses import dirichlet_nll_loss, ensemble_kd_loss, hydra_loss, proxy_dirichlet_loss


def _teachers(n: int, m: int, k: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(n, m, k, generator=g, dtype=torch.float64) * 2, dim=-1).to(dtype)


#: name → loss(z, teachers, **kw); z is [N, K] (hydra: [N, H, K]) and teachers [N, M, K]
LOSSES = {
    "kd": lambda z, t, **kw: ensemble_kd_loss(z, t, **kw),
    "kd_t2": lambda z, t, **kw: ensemble_kd_loss(z, t, temperature=2.0, **kw),
    "nll_offset0": lambda z, t, **kw: dirichlet_nll_loss(z, t, model_offset=0.0, **kw),
    "nll_t2": lambda z, t, **kw: dirichlet_nll_loss(z, t, temperature=2.0, model_offset=1.0, **kw),
    "rkl_offset0": lambda z, t, **kw: proxy_dirichlet_loss(z, t, model_offset=0.0, **kw),
    "rkl_offsets0": lambda z, t, **kw: proxy_dirichlet_loss(z, t, model_offset=0.0, target_offset=0.0, **kw),
    "fkl_offset0": lambda z, t, **kw: proxy_dirichlet_loss(z, t, direction="forward", model_offset=0.0, **kw),
    "rkl_epkl_t2": lambda z, t, **kw: proxy_dirichlet_loss(z, t, estimator="epkl", temperature=2.0, **kw),
    "hydra": lambda z, t, **kw: hydra_loss(z, t, **kw),
}


def _student(name: str, n: int, m: int, k: int, dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n, m, k) if name == "hydra" else (n, k)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


# ---------------------------------------------------------------- item 4: masked rows

#: what a masked-out row may hold: the issue's NaN-gradient cases (z = −45 fp32, −600 fp64 with
#: model_offset=0) and plain garbage (NaN/±inf logits, NaN teachers)
GARBAGE = {
    "z=-45": (-45.0, None),
    "z=-600": (-600.0, None),
    "z=-1e4/+1e4": ("pm1e4", None),
    "z=nan": (math.nan, None),
    "z=inf": (math.inf, None),
    "teacher=nan": (0.0, math.nan),
    "teacher=-inf": (0.0, -math.inf),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("name", list(LOSSES))
def test_masked_rows_contribute_zero_value_and_zero_gradient(name: str, garbage: str, dtype: torch.dtype) -> None:
    """A masked row holding anything gives exactly zero gradient, the other rows' gradients are finite, and
    the loss equals the same loss computed on the unmasked rows alone."""
    n, m, k = 4, 3, 5
    z = _student(name, n, m, k, dtype)
    t = _teachers(n, m, k, dtype)
    bad_z, bad_t = GARBAGE[garbage]
    if bad_z == "pm1e4":
        z[0] = 1e4
        z[0, ..., ::2] = -1e4
    else:
        z[0, ..., 0] = bad_z
    if bad_t is not None:
        t[0, :, 1:] = bad_t
    mask = torch.tensor([False, True, True, True])
    loss = LOSSES[name]
    for reduction in ("sum", "mean"):
        zz = z.clone().requires_grad_()
        value = loss(zz, t, mask=mask, reduction=reduction)
        (grad,) = torch.autograd.grad(value, zz)
        assert torch.isfinite(value), (name, garbage, reduction, value)
        assert torch.isfinite(grad).all(), (name, garbage, reduction, grad)
        assert torch.count_nonzero(grad[0]) == 0, grad[0]
        ref_z = z[1:].clone().requires_grad_()
        ref = loss(ref_z, t[1:], reduction=reduction)
        (ref_grad,) = torch.autograd.grad(ref, ref_z)
        torch.testing.assert_close(value, ref)
        torch.testing.assert_close(grad[1:], ref_grad)
    per_position = loss(z.clone(), t, mask=mask, reduction="none")
    assert per_position[0] == 0 and torch.isfinite(per_position).all()


def test_issue_example_proxy_offset0_masked_row_gradient_is_zero() -> None:
    """The exact reproduction of issue 11 item 4."""
    z = torch.tensor([[-45.0, 0, 0, 0, 0], [0.3, -0.2, 0.1, 0.0, 0.5]], requires_grad=True)
    t = _teachers(2, 3, 5)
    proxy_dirichlet_loss(z, t, mask=torch.tensor([False, True]), model_offset=0.0).backward()
    assert torch.isfinite(z.grad).all() and torch.all(z.grad[0] == 0)


# ---------------------------------------------------------------- item 5: identical teachers

def _identical(n: int, m: int, k: int, one_hot: bool) -> torch.Tensor:
    if one_hot:
        t = torch.full((n, 1, k), -math.inf)
        t[..., 0] = 0.0
    else:
        t = _teachers(n, 1, k)
    return t.expand(n, m, k).contiguous()


@pytest.mark.parametrize("one_hot", [False, True], ids=["soft", "one_hot"])
@pytest.mark.parametrize("m", [1, 4])
@pytest.mark.parametrize("estimator", ["mkl", "epkl"])
def test_identical_teachers_cap_the_precision(m: int, estimator: str, one_hot: bool) -> None:
    """Identical members: divergence 0, so (K−1)/(2·RMI) ([Proxy] eq. 17) is infinite; the estimate is
    MAX_PRECISION, every position is reported as capped, and β = p̄·MAX_PRECISION (+ offset, floored)."""
    t = _identical(3, m, 6, one_hot)
    target = proxy_target(t, estimator=estimator, offset=0.0)
    assert torch.all(target.precision == dirichlet.MAX_PRECISION)
    assert target.capped.all() and int(target.capped.sum()) == 3
    expected = (t[:, 0].double().exp() * dirichlet.MAX_PRECISION).clamp_min(dirichlet.MIN_CONCENTRATION)
    torch.testing.assert_close(target.beta.double(), expected, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("one_hot", [False, True], ids=["soft", "one_hot"])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("direction", ["reverse", "forward"])
@pytest.mark.parametrize("model_offset", [0.0, 1.0])
def test_identical_teachers_target_offset0_loss_is_finite(
    direction: str, m: int, one_hot: bool, dtype: torch.dtype, model_offset: float
) -> None:
    t = _identical(4, m, 5, one_hot).to(dtype)
    z = torch.tensor([[0.0, 1, 2, 3, 4], [-45, 0, 0, 0, 0], [30, -30, 0, 5, -5], [1e4, -1e4, 0, 0, 0]], dtype=dtype)
    z.requires_grad_()
    for normalize in (True, False):
        value = proxy_dirichlet_loss(
            z, t, direction=direction, model_offset=model_offset, target_offset=0.0, normalize=normalize, reduction="none"
        )
        (grad,) = torch.autograd.grad(value.sum(), z)
        assert torch.isfinite(value).all(), value
        assert torch.isfinite(grad.float()).all(), grad


def test_a_normal_precision_estimate_is_not_capped() -> None:
    """The cap only touches degenerate estimates: a diverse ensemble gets (K−1)/(2·RMI) unchanged."""
    lp = _teachers(2, 8, 10, torch.float64, seed=3)
    target = proxy_target(lp, offset=1.0)
    p = lp.exp()
    pbar = p.mean(1)
    rmi = (pbar * (pbar.log() - lp.mean(1))).sum(-1)
    torch.testing.assert_close(target.precision, 9 / (2 * rmi))
    assert not target.capped.any()


def test_capped_positions_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    t = torch.cat([_identical(2, 3, 5, one_hot=False), _teachers(3, 3, 5)])
    with caplog.at_level(logging.DEBUG, logger="shared.dirichlet"):
        proxy_target(t)
    records = [r.getMessage() for r in caplog.records if r.name == "shared.dirichlet"]
    assert any("at 2 of 5 positions" in r for r in records), records


# ---------------------------------------------------------------- item 6: empty input

@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("case", ["empty_batch", "all_false_mask"])
def test_loss_over_no_elements_is_zero_with_zero_gradient(name: str, case: str) -> None:
    n = 0 if case == "empty_batch" else 3
    z = _student(name, n, 3, 5, torch.float32).requires_grad_()
    t = _teachers(n, 3, 5)
    mask = None if case == "empty_batch" else torch.zeros(n, dtype=torch.bool)
    for reduction in ("mean", "sum"):
        value = LOSSES[name](z, t, mask=mask, reduction=reduction)
        assert value.requires_grad and value.shape == ()
        assert value.item() == 0.0
        z.grad = None
        value.backward()
        assert z.grad is not None and torch.count_nonzero(z.grad) == 0


_P = np.array([[0.7, 0.3], [0.2, 0.8]])
_Y = np.array([0, 1])
_EMPTY_P = np.zeros((0, 2))
_EMPTY_Y = np.zeros(0, dtype=np.int64)

METRICS_ON_EMPTY = {
    "ece": (lambda: metrics.expected_calibration_error(_EMPTY_P, _EMPTY_Y), "probs"),
    "nll": (lambda: metrics.negative_log_likelihood(_EMPTY_P, _EMPTY_Y), "probs"),
    "brier": (lambda: metrics.brier_score(_EMPTY_P, _EMPTY_Y), "probs"),
    "accuracy": (lambda: metrics.accuracy(_EMPTY_P, _EMPTY_Y), "probs"),
    "fit_temperature": (lambda: metrics.fit_temperature(_EMPTY_P, _EMPTY_Y), "logits"),
    "calibrated_fit": (lambda: metrics.calibrated_scores(_EMPTY_P, _EMPTY_Y, _P, _Y), "fit_logits"),
    "calibrated_eval": (lambda: metrics.calibrated_scores(_P, _Y, _EMPTY_P, _EMPTY_Y), "eval_logits"),
    "temperature_scaled": (lambda: metrics.temperature_scaled_scores(_EMPTY_P, _EMPTY_Y, 1.0), "logits"),
    "prr": (lambda: metrics.prediction_rejection_ratio([], []), "uncertainty"),
    "rejection_curve": (lambda: metrics.rejection_curve([], []), "uncertainty"),
    "ood_id": (lambda: metrics.ood_detection_scores([], [1.0, 2.0]), "id_scores"),
    "ood_ood": (lambda: metrics.ood_detection_scores([1.0, 2.0], []), "ood_scores"),
}


@pytest.mark.parametrize("name", list(METRICS_ON_EMPTY))
def test_metric_over_no_examples_raises_naming_the_argument(name: str) -> None:
    call, argument = METRICS_ON_EMPTY[name]
    with pytest.raises(ValueError, match=rf"\b{argument}\b.*empty"):
        call()


# ---------------------------------------------------------------- item 10 (part): umask

WRITERS = {
    "text": lambda p: atomic_write_text(p, "x\n"),
    "json": lambda p: atomic_write_json(p, {"a": 1}),
    "torch": lambda p: atomic_torch_save(p, {"w": torch.zeros(2)}),
}


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
@pytest.mark.parametrize("writer", [*WRITERS, "savefig"])
def test_atomic_writes_respect_the_umask(tmp_path, writer: str, umask: int) -> None:
    """The final file has the mode a plain ``open(path, "w")`` gives under the same umask (0o666 & ~umask)."""
    old = os.umask(umask)
    try:
        reference = tmp_path / "plain.txt"
        with open(reference, "w") as f:
            f.write("x")
        target = tmp_path / f"out.{'png' if writer == 'savefig' else 'dat'}"
        if writer == "savefig":
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(1, 1))
            atomic_savefig(target, fig)
            plt.close(fig)
        else:
            WRITERS[writer](target)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == stat.S_IMODE(reference.stat().st_mode) == 0o666 & ~umask, oct(mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["plain.txt", target.name])  # no temp left


def test_log_likelihood_on_the_boundary_is_signed_inf_or_zero_never_nan() -> None:
    """ln Dir(π|α) with π_k = 0: the term (α_k − 1) ln π_k is −inf for α_k > 1, +inf for α_k < 1, absent for α_k = 1."""
    from shared.dirichlet import log_likelihood

    log_pi = torch.tensor([0.0, -math.inf, -math.inf])
    # Dir(2, 1, 1) at π = (1, 0, 0): density Γ(4) / (Γ(2)Γ(1)Γ(1)) · π_1^1 = 6
    assert log_likelihood(torch.tensor([2.0, 1.0, 1.0]), log_pi).item() == pytest.approx(math.log(6.0))
    assert log_likelihood(torch.tensor([1.0, 2.0, 1.0]), log_pi).item() == -math.inf
    assert log_likelihood(torch.tensor([1.0, 0.5, 1.0]), log_pi).item() == math.inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("model_offset", [0.0, 1.0])
def test_nll_without_smoothing_on_one_hot_teachers_is_finite(dtype: torch.dtype, model_offset: float) -> None:
    """Found by the fuzz test: smoothing=0 with one-hot members gave Σ (α_k − 1)·ln 0 = inf − inf = NaN."""
    t = _identical(3, 2, 4, one_hot=True).to(dtype)
    z = torch.tensor([[0.0, 1.0, -1.0, 2.0], [-1e4, 1e4, 0.0, 0.0], [3.0, -45.0, 0.5, 0.0]], dtype=dtype, requires_grad=True)
    value = dirichlet_nll_loss(z, t, smoothing=0.0, model_offset=model_offset, reduction="none")
    (grad,) = torch.autograd.grad(value.sum(), z)
    assert torch.isfinite(value).all() and torch.isfinite(grad.float()).all()
