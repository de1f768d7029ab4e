"""``individual``: one model trained by maximum likelihood on the labels (cross-entropy)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Method, register_method


@register_method("individual")
class Individual(Method):
    """L = −(1/B) Σ_i ln softmax(z_i)_{y_i}."""

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        if labels is None:
            raise ValueError("individual training needs labels")
        return F.cross_entropy(student_out.float(), labels)
