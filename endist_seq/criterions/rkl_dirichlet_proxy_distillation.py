"""Criterion ``rkl_dirichlet_proxy_distillation``: reverse KL to the Proxy-Dirichlet target ([Proxy], the method).

Per target token ([Proxy] §3, eq. 14, 16, 17)::

    β = p̄_T · β̂₀ + target_offset,   α = exp(z / T) + model_offset
    L_t = KL[Dir(α) ‖ Dir(β)] / max(β̂₀, 1)        (β-only constants dropped)

The normalisation by the target precision puts the loss on the scale of a
cross-entropy (β̂₀ weighs the reconstruction term of [Proxy] eq. 18). Computed by
:func:`shared.losses.proxy_dirichlet_loss` (``direction="reverse"``).
"""


from dataclasses import dataclass

from fairseq.criterions import register_criterion

from endist_seq.criterions.dirichlet_proxy_distillation import (
    DirichletProxyDistillation,
    DirichletProxyDistillationConfig,
)


@dataclass
class RKLDirichletProxyDistillationConfig(DirichletProxyDistillationConfig):
    pass


@register_criterion("rkl_dirichlet_proxy_distillation", dataclass=RKLDirichletProxyDistillationConfig)
class RKLDirichletProxyDistillation(DirichletProxyDistillation):
    """Reverse KL from the student's Dirichlet to the Proxy-Dirichlet target."""

    direction = "reverse"
