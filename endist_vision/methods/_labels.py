"""The cross-entropy term of the distillation loss ([LatentBE] App. B.4, eq. 26):

    L = α · KD_τ + (1 − α) · H[y, p_S(x)],      ``ce_weight`` = 1 − α.

Private module (leading underscore: not auto-registered), used by every distillation method
(``end``, ``end2``, ``proxy_end2`` and the multi-member methods of ``_multimember.py``).

* The cross-entropy is taken at T = 1: eq. 26 writes p_S(x; τ), but both reference codes of the
  authors use the untempered student (cs-giung/distill-latentbe ``scripts/train_KD_LatentBE.py``:
  ``loss_ce`` on the log-confidences; cs-giung/giung2 Diversity-Matters ``train_student.py``:
  ``F.cross_entropy(logits, labels)``), and at τ = 20 (TinyImageNet) a tempered CE would barely
  move the student.
* Multi-member students ``[B, M, K]``: the mean over members of each member's cross-entropy (the
  authors' code tiles the labels over the M members and averages).
* Dirichlet students (``output = "dirichlet"``): the cross-entropy of the expected categorical
  p̂ = α/α₀ with α = exp(z) + offset (what evaluation predicts with).
* Rows labelled ``-1`` (unlabeled transfer data) are left out; a batch without labels has CE = 0.
"""

from __future__ import annotations


import torch

from endist_vision.errors import ConfigError
from shared.uncertainty import dirichlet_mean_log_probs


def check_ce_weight(value: float) -> None:
    """``method_args.ce_weight`` = 1 − α of eq. 26 must lie in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"method_args.ce_weight must be in [0, 1] (1 - alpha of [LatentBE] eq. 26), got {value}")


def label_cross_entropy(student_out: torch.Tensor, labels: torch.Tensor | None, *,
                        dirichlet_offset: float | None = None) -> torch.Tensor:
    """Mean over labelled rows (and over members for ``[B, M, K]``) of ``−log p_S(y | x)``."""
    if labels is None:
        return student_out.sum() * 0.0
    lp = dirichlet_mean_log_probs(student_out.float(), dirichlet_offset or 0.0)
    y = labels.to(lp.device).long()
    keep = y >= 0
    if not bool(keep.any()):
        return lp.sum() * 0.0  # keeps the graph (DDP) and a finite 0
    lp, y = lp[keep], y[keep]
    if lp.dim() == 3:  # [B, M, K]: every member against the label
        nll = -lp.gather(-1, y.view(-1, 1, 1).expand(-1, lp.shape[1], 1)).squeeze(-1)
    else:
        nll = -lp.gather(-1, y.view(-1, 1)).squeeze(-1)
    return nll.mean()


def mix_ce(distill: torch.Tensor, ce_weight: float, student_out: torch.Tensor, labels: torch.Tensor | None, *,
           dirichlet_offset: float | None = None) -> torch.Tensor:
    """``(1 − w)·distill + w·CE`` (eq. 26 with w = 1 − α); ``distill`` unchanged when w = 0."""
    if ce_weight == 0:
        return distill
    ce = label_cross_entropy(student_out, labels, dirichlet_offset=dirichlet_offset)
    return (1.0 - ce_weight) * distill + ce_weight * ce
