"""Input perturbations for ensemble distillation ([LatentBE] §3.2, eqs. 9–14, App. B.4 eqs. 34–36).

All perturbations act on raw pixels in ``[0, 1]`` with a per-example step of fixed L2 norm

    x̃ = clip(x + ε · d / ‖d‖₂, 0, 1),      ε = γ · √D / 255,

where D is the number of input dimensions (App. B.4: every perturbation is scaled to the expected
size of Gaussian noise with σ = γ/255, i.e. γ = 1 is one grey level per pixel).  Directions ``d``:

* ``gaussian``: d = z ~ N(0, I)                                       (eq. 34, normalised)
* ``ods``: d = ∇ₓ wᵀ p_{T_m}(x; τ), w ~ U(−1, 1)^K, one random teacher m  (eq. 4 / 35); τ is the
  distillation temperature (the methods pass ``method_args.temperature`` unless
  ``perturbation_temperature`` is set), as in the Diversity-Matters reference code
  (``projects/Diversity-Matters/scripts/train_student.py`` of cs-giung/giung2: ``softmax(logits / kd_temperature)``).
* ``confods``: ODS with the step scaled per example by the confidence of the *chosen* teacher at τ,
  max_k p_{T_m}(x; τ)_k (Nam et al. 2021; same reference code: ``eps *= max(y)`` with ``y`` the tempered
  probabilities of teacher m).  ``confidence="ensemble_mean"`` gives the former behaviour of this
  package: the teacher-ensemble mean's confidence max_k p̄_k(x) at T = 1.
* ``tdiv_sdiv``: d = ∇ₓ [KL(sg(p_{T_i}) ‖ p_{T_j}) − KL(sg(p_{S_i}) ‖ p_{S_j})]    (eqs. 12–14)
  for one random ordered pair i ≠ j drawn once and used for the teachers *and* the student members
  ([LatentBE] Alg. 2 line 4 samples one (i, j); the authors' code cs-giung/distill-latentbe
  ``train_KD_LatentBE_TDivSDiv.py`` picks both pairs with the same key).  When the teacher and student
  member counts differ (no one-to-one pairing) or ``shared_pair=False``, the student pair is drawn on
  its own (the former behaviour).  The student is put in evaluation mode while δ is computed (its mode
  is restored afterwards).

The teacher ensemble and a multi-member student are callables ``x → logits [B, M, K]``
(``endist_vision.models.wrappers``: ensembles, BE and Hydra networks; the teacher through
``endist_vision.teacher.differentiable_teacher``).  Examples whose gradient vanishes are left unperturbed.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import nn
from torch.nn import functional as F

from shared.uncertainty import ensemble_uncertainty

Logits = Callable[[torch.Tensor], torch.Tensor]
PerturbationKind = Literal["none", "gaussian", "ods", "confods", "tdiv_sdiv"]
PERTURBATIONS: tuple[str, ...] = ("none", "gaussian", "ods", "confods", "tdiv_sdiv")


def step_size(x: torch.Tensor, gamma: float) -> float:
    """ε = γ·√D/255 with D = number of input dimensions per example."""
    return gamma * math.sqrt(x[0].numel()) / 255.0


def apply_step(x: torch.Tensor, direction: torch.Tensor, gamma: float,
               scale: torch.Tensor | None = None) -> torch.Tensor:
    """``clip(x + ε·scale·d/‖d‖₂, 0, 1)`` per example (rows with ‖d‖ = 0 unchanged)."""
    d = direction.detach().flatten(1).to(x.dtype)
    norm = d.norm(dim=1, keepdim=True)
    unit = torch.where(norm > 0, d / norm.clamp_min(torch.finfo(d.dtype).tiny), torch.zeros_like(d))
    eps = step_size(x, gamma)
    if scale is not None:
        unit = unit * scale.detach().reshape(-1, 1).to(x.dtype)
    return (x.detach() + eps * unit.view_as(x)).clamp_(0.0, 1.0)


def gaussian(x: torch.Tensor, gamma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian-direction step ([LatentBE] eq. 34) with ‖δ‖₂ = γ√D/255 before clipping."""
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return apply_step(x, z, gamma)


def _grad(objective: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(objective, x)
    return g


ConfidenceSource = Literal["teacher", "ensemble_mean"]


def ods(x: torch.Tensor, teachers: Logits, gamma: float, temperature: float = 1.0,
        confidence: bool = False, generator: torch.Generator | None = None,
        confidence_source: ConfidenceSource = "teacher") -> torch.Tensor:
    """ODS / ConfODS step (eq. 35): direction ∇ₓ wᵀ p_{T_m}(x; τ), w ~ U(−1,1)^K per example, one random m.

    ``confidence``: ConfODS, step × max_k p_{T_m}(x; τ)_k of the chosen teacher m (``confidence_source=
    "teacher"``, Diversity-Matters reference code) or × max_k p̄_k(x) of the ensemble mean at T = 1
    (``"ensemble_mean"``, the former default here).
    """
    if confidence_source not in ("teacher", "ensemble_mean"):
        raise ValueError(f"confidence_source must be teacher|ensemble_mean, got {confidence_source!r}")
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = teachers(xg).float()
        m = int(torch.randint(logits.shape[1], (1,), generator=generator))
        probs = F.softmax(logits[:, m] / temperature, dim=-1)
        w = (torch.rand(probs.shape, generator=generator) * 2 - 1).to(probs.device)
        g = _grad((w * probs).sum(), xg)
    scale = None
    if confidence and confidence_source == "teacher":  # chosen teacher's confidence at τ
        scale = probs.detach().max(-1).values
    elif confidence:  # teacher-ensemble mean's confidence max_k p̄_k(x) at T = 1
        scale = F.softmax(logits.detach(), dim=-1).mean(1).max(-1).values
    return apply_step(x, g, gamma, scale)


def _pair(m: int, generator: torch.Generator | None) -> tuple[int, int]:
    if m < 2:
        raise ValueError(f"TDiv-SDiv needs at least 2 members, got {m}")
    i = int(torch.randint(m, (1,), generator=generator))
    j = int(torch.randint(m - 1, (1,), generator=generator))
    return i, j + (j >= i)


def pair_divergence(logits_i: torch.Tensor, logits_j: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-example ``KL(sg(p_i) ‖ p_j)`` ([LatentBE] eqs. 13–14), gradient only through ``p_j``."""
    lp_i = F.log_softmax(logits_i.detach().float() / temperature, -1)
    lp_j = F.log_softmax(logits_j.float() / temperature, -1)
    return (lp_i.exp() * (lp_i - lp_j)).sum(-1)


def tdiv_sdiv(x: torch.Tensor, teachers: Logits, student: Logits | None, gamma: float,
              temperature: float = 1.0, generator: torch.Generator | None = None,
              shared_pair: bool = True) -> torch.Tensor:
    """TDiv − SDiv step ([LatentBE] eq. 36): ascend teacher pair divergence, descend student pair divergence.

    ``student`` returns ``[B, M_s, K]``; with ``None`` (or a single-member student) only the TDiv term
    is used.  One ordered pair (i, j) serves both terms ([LatentBE] Alg. 2 line 4) when ``shared_pair``
    and M_s = M_T; otherwise the student pair is drawn separately.  The student is evaluated in eval mode
    while δ is computed.
    """
    xg = x.detach().clone().requires_grad_(True)
    was_training = isinstance(student, nn.Module) and student.training
    try:
        if isinstance(student, nn.Module):
            student.eval()
        with torch.enable_grad():
            t = teachers(xg)
            ti, tj = _pair(t.shape[1], generator)
            objective = pair_divergence(t[:, ti], t[:, tj], temperature).sum()
            if student is not None:
                s = student(xg)
                if s.dim() == 3 and s.shape[1] >= 2:
                    same = shared_pair and s.shape[1] == t.shape[1]
                    si, sj = (ti, tj) if same else _pair(s.shape[1], generator)
                    objective = objective - pair_divergence(s[:, si], s[:, sj], temperature).sum()
            g = _grad(objective, xg)
    finally:
        if was_training:
            student.train()
    return apply_step(x, g, gamma)


def perturb(kind: PerturbationKind, x: torch.Tensor, teachers: Logits, student: Logits | None,
            gamma: float, temperature: float = 1.0, generator: torch.Generator | None = None, *,
            confidence_source: ConfidenceSource = "teacher", shared_pair: bool = True) -> torch.Tensor:
    """Dispatch on ``kind`` (one of :data:`PERTURBATIONS`); ``"none"`` returns ``x`` unchanged.
    ``confidence_source``: ConfODS scale (:func:`ods`); ``shared_pair``: TDiv−SDiv pairing (:func:`tdiv_sdiv`)."""
    if kind == "none":
        return x
    if gamma < 0:
        raise ValueError(f"perturbation gamma must be >= 0, got {gamma}")
    if kind == "gaussian":
        return gaussian(x, gamma, generator)
    if kind in ("ods", "confods"):
        return ods(x, teachers, gamma, temperature, confidence=kind == "confods", generator=generator,
                   confidence_source=confidence_source)
    if kind == "tdiv_sdiv":
        return tdiv_sdiv(x, teachers, student, gamma, temperature, generator, shared_pair=shared_pair)
    raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {kind!r}")


def ensemble_divergence(logits: torch.Tensor) -> torch.Tensor:
    """Per-example functional diversity ([LatentBE] eq. 6) of ``[B, M, K]`` logits.

    ``Div = Σ_{i≠j} KL(p_i ‖ p_j) / (M(M−1)) = EPKL · M/(M−1)``, since ``shared.uncertainty``'s
    EPKL averages over all M² ordered pairs (diagonal terms are 0).
    """
    m = logits.shape[-2]
    if m < 2:
        raise ValueError(f"diversity needs at least 2 members, got {m}")
    epkl = ensemble_uncertainty(F.log_softmax(logits.float(), -1))["epkl"]
    return epkl * m / (m - 1)
