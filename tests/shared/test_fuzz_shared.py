"""Seeded fuzz of the public ``shared`` API (issue 11, "Done means").

A few thousand calls of the losses, the Dirichlet and uncertainty measures, the metrics and the
temperature schedule with hostile but legal inputs — logits up to ±1e4, one-hot (−inf), sharp and
identical teachers (M = 1 included), offsets 0 and 1, fp16/bf16/fp32/fp64, empty batches, random
and all-false masks — and a sprinkling of illegal arguments. Asserts, for every call:

- no NaN in any value or gradient;
- inf only where the docstring says so: ``ensemble_uncertainty``'s ``epkl``/``rmi`` (+inf when a
  member gives probability 0 to a class another supports), and the gradient of a half-precision
  input (``shared.losses``: it is returned in the input dtype and may overflow there);
- no exception other than ``ValueError`` with a message.

The values themselves are checked against closed forms in the other test files; this one checks
that nothing breaks. Each case draws its inputs from one seeded generator, so a failure names a
reproducible case number.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch

from shared import metrics
from shared.dirichlet import entropy, kl_divergence, log_likelihood, proxy_target
from shared.losses import dirichlet_nll_loss, dropped_constant, ensemble_kd_loss, hydra_loss, proxy_dirichlet_loss
from shared.schedules import TemperatureAnnealing
from shared.uncertainty import alphas_from_logits, dirichlet_uncertainty, ensemble_uncertainty

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
HALF = (torch.float16, torch.bfloat16)
N_CASES = 2000


class Draw:
    """Random inputs from one seeded numpy generator (torch tensors built from numpy: reproducible)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def shape(self) -> Tuple[int, int, int]:
        n = self.choice([0, 1, 2, 3, 5])
        return n, self.choice([1, 2, 3, 5]), self.choice([1, 2, 3, 7])

    def logits(self, shape, dtype) -> torch.Tensor:
        kind = self.choice(["normal", "wide", "extreme", "constant", "mixed"])
        if kind == "normal":
            x = self.rng.normal(size=shape)
        elif kind == "wide":
            x = self.rng.normal(size=shape) * 50.0
        elif kind == "extreme":
            x = self.rng.choice([-1e4, 1e4], size=shape)
        elif kind == "constant":
            x = np.full(shape, self.choice([-1e4, -45.0, 0.0, 30.0, 1e4]))
        else:
            x = self.rng.normal(size=shape) * self.rng.choice([1.0, 40.0, 700.0, 1e4], size=shape)
        return torch.from_numpy(np.clip(x, -1e4, 1e4)).to(dtype)

    def teachers(self, n: int, m: int, k: int, dtype) -> torch.Tensor:
        kind = self.choice(["soft", "sharp", "one_hot", "identical", "identical_one_hot", "mixed_one_hot"])
        if kind in ("one_hot", "identical_one_hot", "mixed_one_hot"):
            cls = self.rng.integers(k, size=(n, 1 if kind == "identical_one_hot" else m))
            lp = np.full((n, cls.shape[1], k), -np.inf)
            np.put_along_axis(lp, cls[..., None], 0.0, axis=-1)
            if kind == "mixed_one_hot" and n and m > 1:  # one soft member among one-hot ones
                lp[:, 0] = _log_softmax(self.rng.normal(size=(n, k)))
            lp = np.broadcast_to(lp, (n, m, k)).copy()
        else:
            scale = {"soft": 2.0, "sharp": 1e4, "identical": 3.0}[kind]
            lp = _log_softmax(self.rng.normal(size=(n, 1 if kind == "identical" else m, k)) * scale)
            lp = np.broadcast_to(lp, (n, m, k)).copy()
        return torch.from_numpy(lp).to(dtype)

    def mask(self, n: int) -> Optional[torch.Tensor]:
        kind = self.choice(["none", "none", "random", "all_false", "all_true"])
        if kind == "none":
            return None
        if kind == "random":
            return torch.from_numpy(self.rng.random(n) < 0.5)
        return torch.full((n,), kind == "all_true", dtype=torch.bool)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


#: values, gradients, and the names that may be infinite: value keys +inf, gradient keys ±inf
Outcome = Tuple[Dict[str, object], Dict[str, torch.Tensor], set]


def _grads(value: torch.Tensor, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    leaves = [t for t in inputs.values() if t.requires_grad]
    if not leaves or not value.requires_grad:
        return {}
    got = torch.autograd.grad(value.sum(), leaves, allow_unused=True)
    return {name: g for name, g in zip([k for k, t in inputs.items() if t.requires_grad], got) if g is not None}


def case_loss(d: Draw) -> Outcome:
    n, m, k = d.shape()
    dtype = d.choice(DTYPES)
    name = d.choice(["kd", "nll", "proxy", "hydra"])
    z = d.logits((n, m, k) if name == "hydra" else (n, k), dtype).requires_grad_()
    t = d.teachers(n, m, k, d.choice(DTYPES))
    kw = dict(mask=d.mask(n), reduction=d.choice(["none", "sum", "mean"]), temperature=d.choice([1.0, 1.0, 2.0, 0.5]))
    if name == "kd":
        value = ensemble_kd_loss(z, t, **kw)
    elif name == "nll":
        value = dirichlet_nll_loss(z, t, model_offset=d.choice([0.0, 1.0]), smoothing=d.choice([0.0, 1e-4]), **kw)
    elif name == "proxy":
        value = proxy_dirichlet_loss(
            z,
            t,
            direction=d.choice(["reverse", "forward"]),
            model_offset=d.choice([0.0, 1.0]),
            target_offset=d.choice([0.0, 1.0]),
            estimator=d.choice(["mkl", "epkl"]),
            normalize=d.choice([True, False]),
            **kw,
        )
    else:
        value = hydra_loss(z, t, **kw)
    # documented (shared.losses): a half input's gradient may overflow to ±inf in its own dtype
    return {"loss": value}, _grads(value, {"z": z}), {"z"} if dtype in HALF else set()


def case_proxy_target(d: Draw) -> Outcome:
    n, m, k = d.shape()
    t = d.teachers(n, m, k, d.choice(DTYPES))
    target = proxy_target(
        t, estimator=d.choice(["mkl", "epkl"]), offset=d.choice([0.0, 1.0]), temperature=d.choice([1.0, 3.0])
    )
    out = {"beta": target.beta, "precision": target.precision, "capped": target.capped.float()}
    out["dropped_reverse"] = dropped_constant(target.beta, "reverse")
    out["dropped_forward"] = dropped_constant(target.beta, "forward")
    return out, {}, set()


def case_ensemble_uncertainty(d: Draw) -> Outcome:
    n, m, k = d.shape()
    return dict(ensemble_uncertainty(d.teachers(n, m, k, d.choice(DTYPES)))), {}, {"epkl", "rmi"}


def case_dirichlet(d: Draw) -> Outcome:
    """Dirichlet math on the concentrations endist produces: α from ``alphas_from_logits`` (any logits), β
    from ``proxy_target`` (the documented range in which the gradients are finite, see ``shared.dirichlet``)."""
    n, m, k = d.shape()
    dtype = d.choice(DTYPES)
    z = d.logits((n, k), dtype).requires_grad_()
    param = d.choice(["exp", "exp", "softplus"])
    alpha = alphas_from_logits(z, offset=d.choice([0.0, 1.0]), parametrization=param)
    beta = proxy_target(d.teachers(n, m, k, d.choice(DTYPES)), offset=d.choice([0.0, 1.0])).beta
    log_pi = torch.log_softmax(d.logits((n, k), torch.float64), -1).to(d.choice(DTYPES))
    out = {
        "alpha": alpha,
        "kl": kl_divergence(alpha, beta),
        "log_likelihood": log_likelihood(alpha, log_pi),
        "entropy": entropy(alpha),
        **{f"dirichlet_{key}": v for key, v in dirichlet_uncertainty(alpha).items()},
    }
    grads: Dict[str, torch.Tensor] = {}
    if n and k:
        for key in ("kl", "log_likelihood", "entropy", "dirichlet_mutual_information"):
            (grads[key],) = torch.autograd.grad(out[key].sum(), z, retain_graph=True)
    # documented: a half input's gradient may overflow to ±inf in its own dtype
    return out, grads, set(grads) if dtype in HALF else set()


def case_metrics(d: Draw) -> Outcome:
    n = d.choice([0, 1, 2, 5, 30])
    k = d.choice([1, 2, 3, 10])
    dtype = d.choice(DTYPES)
    logits = d.logits((n, k), dtype)
    probs = torch.softmax(logits.double(), -1).to(dtype)
    labels = torch.from_numpy(d.rng.integers(k, size=n))
    which = d.choice(["ece", "nll", "brier", "accuracy", "prr", "curve", "ood", "fit", "calibrated"])
    if which == "ece":
        return {"ece": metrics.expected_calibration_error(probs, labels, n_bins=d.choice([1, 15]))}, {}, set()
    if which == "nll":
        return {"nll": metrics.negative_log_likelihood(probs, labels)}, {}, set()
    if which == "brier":
        return {"brier": metrics.brier_score(probs, labels)}, {}, set()
    if which == "accuracy":
        return {"accuracy": metrics.accuracy(probs, labels)}, {}, set()
    unc = d.logits((n,), dtype)
    err = torch.from_numpy(d.rng.random(n) < d.choice([0.0, 0.3, 1.0])).to(dtype)
    if which == "prr":
        value = metrics.prediction_rejection_ratio(unc, err)
        if n and float(err.double().max() - err.double().min()) == 0.0:
            # documented: NaN when AR_orc = 0, i.e. all errors are equal (none to reject, all wrong, or N = 1)
            assert math.isnan(value)
            return {}, {}, set()
        return {"prr": value}, {}, set()
    if which == "curve":
        return dict(metrics.rejection_curve(unc, err)), {}, set()
    if which == "ood":
        return dict(metrics.ood_detection_scores(unc, d.logits((d.choice([0, 1, 4]),), dtype))), {}, set()
    if which == "fit":
        return {"temperature": metrics.fit_temperature(logits, labels, max_iter=20)}, {}, set()
    return dict(metrics.calibrated_scores(logits, labels, d.logits((n, k), dtype), labels)), {}, set()


def case_schedule(d: Draw) -> Outcome:
    sched = TemperatureAnnealing(
        d.choice([10.0, 1.0, 0.5, math.nan, math.inf, 0.0]),
        d.choice([1.0, 2.0, -1.0]),
        hold_steps=d.choice([0, 3, -1]),
        decay_steps=d.choice([0, 5]),
    )
    values = {f"T{s}": sched(s) for s in (0, 1, 4, 8, 100)}
    values["step"] = sched.step()
    clone = TemperatureAnnealing(1.0)
    clone.load_state_dict(sched.state_dict())
    assert clone(7) == sched(7)
    return values, {}, set()


def case_bad_arguments(d: Draw) -> Outcome:
    """Illegal arguments must be a ValueError with a message (checked by the caller)."""
    z, t = torch.zeros(2, 3), torch.log_softmax(torch.zeros(2, 2, 3), -1)
    bad = d.choice(
        [
            lambda: ensemble_kd_loss(z, t, temperature=d.choice([0.0, -1.0, math.nan, math.inf])),
            lambda: dirichlet_nll_loss(z, t, model_offset=d.choice([-1.0, math.nan])),
            lambda: dirichlet_nll_loss(z, t, smoothing=d.choice([1.0, -0.1, math.nan])),
            lambda: proxy_dirichlet_loss(z, t, target_offset=d.choice([-1.0, math.inf])),
            lambda: proxy_dirichlet_loss(z, t, direction="sideways"),
            lambda: proxy_dirichlet_loss(z, None),
            lambda: proxy_dirichlet_loss(z, t, estimator="guess"),
            lambda: hydra_loss(z, t),
            lambda: ensemble_kd_loss(z, t[:, :, :2]),
            lambda: ensemble_kd_loss(z, t, reduction="avg"),
            lambda: ensemble_kd_loss(z, t, mask=torch.ones(3, dtype=torch.bool)),
            lambda: ensemble_uncertainty(torch.zeros(3)),
            lambda: alphas_from_logits(z, parametrization="relu"),
            lambda: metrics.accuracy(np.zeros((2, 3)), np.array([0, 3])),
            lambda: metrics.expected_calibration_error(np.full((2, 3), 1 / 3), np.array([0, 1]), n_bins=0),
            lambda: metrics.temperature_scaled_scores(np.zeros((2, 3)), np.array([0, 1]), d.choice([0.0, math.nan])),
            lambda: metrics.fit_temperature(np.zeros((2, 3)), np.array([0, 5])),
            lambda: metrics.rejection_curve([1.0, 2.0], [1.0]),
        ]
    )
    bad()
    raise AssertionError("an illegal argument was accepted")


CASES: List[Tuple[Callable[[Draw], Outcome], int]] = [
    (case_loss, 10),
    (case_proxy_target, 3),
    (case_ensemble_uncertainty, 3),
    (case_dirichlet, 4),
    (case_metrics, 2),
    (case_schedule, 1),
    (case_bad_arguments, 1),
]


def _check_finite(where: str, name: str, value, allow_posinf: bool = False, allow_inf: bool = False) -> None:
    if isinstance(value, torch.Tensor):
        v = value.detach().double().cpu().numpy()
    else:
        v = np.asarray(value, dtype=np.float64)
    assert not np.isnan(v).any(), f"{where}: NaN in {name}: {v}"
    bad = np.isinf(v) & ~(allow_inf | (allow_posinf & (v > 0)))
    assert not bad.any(), f"{where}: undocumented inf in {name}: {v}"


def test_fuzz_shared_api() -> None:
    funcs = [f for f, weight in CASES for _ in range(weight)]
    counts: Dict[str, int] = {}
    for i in range(N_CASES):
        d = Draw(i)
        func = d.choice(funcs)
        where = f"case {i} ({func.__name__})"
        try:
            values, grads, inf_ok = func(d)
        except ValueError as err:
            assert str(err).strip(), f"{where}: ValueError without a message"
            counts["ValueError"] = counts.get("ValueError", 0) + 1
            continue
        except AssertionError:
            raise
        except Exception as err:  # noqa: BLE001 — the point: nothing but ValueError may escape
            pytest.fail(f"{where}: {type(err).__name__}: {err}")
        counts[func.__name__] = counts.get(func.__name__, 0) + 1
        for name, value in values.items():
            _check_finite(where, name, value, allow_posinf=name in inf_ok)
        for name, g in grads.items():
            _check_finite(where, f"gradient {name}", g, allow_inf=name in inf_ok)
    # every kind of case ran, and illegal arguments really were refused
    assert set(counts) >= {f.__name__ for f, _ in CASES if f is not case_bad_arguments} | {"ValueError"}, counts
    assert "case_bad_arguments" not in counts
