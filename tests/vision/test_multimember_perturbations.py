"""Perturbation norms and the TDiv − SDiv diversification effect on small trained models (issue #6)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

from endist_vision.models import ModuleEnsemble
from endist_vision.models import BatchEnsembleNet
from endist_vision.perturbations import ensemble_divergence, perturb, step_size


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


@pytest.fixture(scope="module")
def trained() -> tuple[torch.Tensor, nn.Module, BatchEnsembleNet, BatchEnsembleNet]:
    """Two digits MLP teachers (different seeds) and a 2-member BatchEnsemble student (random-sign fast
    weights) trained on the labels: a copy after 20 steps ("early") and after 100 steps ("late")."""
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    teachers = ModuleEnsemble([_mlp(1), _mlp(2)])
    for member in teachers.members:
        opt = torch.optim.Adam(member.parameters(), lr=1e-2)
        for _ in range(100):
            opt.zero_grad()
            F.cross_entropy(member(x), y).backward()
            opt.step()
    teachers.eval()
    torch.manual_seed(3)
    student = BatchEnsembleNet.from_plain(_mlp(3), 2, fast_init="random_sign")
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    early = None
    for step in range(100):
        if step == 20:
            early = copy.deepcopy(student)
        opt.zero_grad()
        F.cross_entropy(student(x).flatten(0, 1), y.repeat_interleave(2)).backward()
        opt.step()
    return x, teachers, early, student


def _div_change(kind: str, batch: torch.Tensor, teachers: nn.Module, student: nn.Module | None,
                measured: nn.Module, gamma: float, draws: int = 4) -> tuple[float, float]:
    """Mean relative change of teacher / ``measured``-student diversity ([LatentBE] eqs. 16–17)."""
    gen = torch.Generator().manual_seed(0)
    measured.eval()
    with torch.no_grad():
        t0 = ensemble_divergence(teachers(batch)).mean()
        s0 = ensemble_divergence(measured(batch)).mean()
    dt = ds = 0.0
    for _ in range(draws):  # random ordered pairs (i, j): average a few draws
        xt = perturb(kind, batch, teachers, student, gamma, generator=gen)
        with torch.no_grad():
            dt += float(ensemble_divergence(teachers(xt)).mean() / t0 - 1) / draws
            ds += float(ensemble_divergence(measured(xt)).mean() / s0 - 1) / draws
    return dt, ds


@pytest.mark.parametrize("kind", ["gaussian", "ods", "confods", "tdiv_sdiv"])
def test_step_norm_is_gamma_sqrt_d_over_255(kind: str, trained) -> None:
    _, teachers, _, student = trained
    x = torch.full((16, 64), 0.5)  # interior point: no clipping for a small step
    gamma = 4.0
    eps = step_size(x, gamma)
    assert math.isclose(eps, 4.0 * 8.0 / 255.0)
    xt = perturb(kind, x, teachers, student, gamma, generator=torch.Generator().manual_seed(0))
    norms = (xt - x).norm(dim=1)
    if kind == "confods":  # scaled by the chosen teacher's confidence max_k p_{T_m}(x)_k ∈ (1/K, 1] (τ = 1 here)
        conf = F.softmax(teachers(x), -1).max(-1).values  # [B, M]
        assert any(torch.allclose(norms, eps * conf[:, m], rtol=1e-4, atol=1e-6) for m in range(conf.shape[1]))
    else:
        torch.testing.assert_close(norms, torch.full_like(norms, eps), rtol=1e-4, atol=1e-6)
    assert not torch.equal(xt, x)


@pytest.mark.parametrize("kind", ["gaussian", "ods", "tdiv_sdiv"])
def test_perturbed_pixels_are_clipped_to_unit_range(kind: str, trained) -> None:
    x, teachers, _, student = trained
    xt = perturb(kind, x[:64], teachers, student, gamma=200.0, generator=torch.Generator().manual_seed(1))
    assert float(xt.min()) >= 0.0 and float(xt.max()) <= 1.0
    assert float((xt - x[:64]).norm(dim=1).max()) <= step_size(x, 200.0) + 1e-5


class _ModeRecorder(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        return self.inner(x)


def test_student_runs_in_eval_mode_and_gets_no_parameter_grads(trained) -> None:
    x, teachers, _, student = trained
    rec = _ModeRecorder(student).train()
    rec.zero_grad(set_to_none=True)
    perturb("tdiv_sdiv", x[:8], teachers, rec, gamma=1.0)
    assert rec.seen == [False]  # δ computed with the student in eval mode ...
    assert rec.training and student.training  # ... and its mode restored afterwards
    assert all(p.grad is None for p in student.parameters())


def test_tdiv_sdiv_raises_teacher_and_lowers_student_diversity(trained) -> None:
    """[LatentBE] eqs. 16–17 / Fig. 4: early in training the TDiv − SDiv step increases the teachers'
    diversity and decreases the student members' diversity on the perturbed batch vs the clean one."""
    x, teachers, early, _ = trained
    dt, ds = _div_change("tdiv_sdiv", x[:512], teachers, early, early, gamma=2.0)
    assert dt > 0.1, dt
    assert ds < -0.02, ds
    # a Gaussian step of the same size changes teacher diversity far less
    dg, _ = _div_change("gaussian", x[:512], teachers, early, early, gamma=2.0)
    assert dt > 5 * abs(dg), (dt, dg)


def test_sdiv_term_lowers_student_diversity_relative_to_tdiv_alone(trained) -> None:
    """For a converged student (near-zero member disagreement on training data any step raises it) the
    −SDiv term still makes the student diversity grow less than the teacher-only direction does."""
    x, teachers, _, late = trained
    dt, ds = _div_change("tdiv_sdiv", x[:512], teachers, late, late, gamma=2.0)
    dt_only, ds_only = _div_change("tdiv_sdiv", x[:512], teachers, None, late, gamma=2.0)
    assert dt > 0.1 and dt_only > dt
    assert ds < ds_only - 0.2, (ds, ds_only)


def test_unknown_kind_and_negative_gamma_are_rejected(trained) -> None:
    x, teachers, _, student = trained
    with pytest.raises(ValueError, match="perturbation must be one of"):
        perturb("fgsm", x[:2], teachers, student, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        perturb("ods", x[:2], teachers, student, -1.0)
