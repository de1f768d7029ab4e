"""``proxy_end2``: Proxy-Dirichlet distillation ([Proxy] §3–4): the ensemble is summarised by a
proxy Dirichlet β = p̄·β̂₀ + 1 (Minka's estimate of the precision, [Proxy] eq. 17) and the student
Dir(α), α = exp(z) + 1, minimises the reverse KL[Dir(α)‖Dir(β)] (``direction="forward"`` optional),
via :func:`shared.losses.proxy_dirichlet_loss`. Offsets 1 on both sides ([Proxy] §4)."""

from __future__ import annotations

from shared.losses import proxy_dirichlet_loss

from . import Method, register_method


@register_method("proxy_end2")
class ProxyEnD2(Method):
    needs_teacher = True
    output = "dirichlet"
    defaults = {"direction": "reverse", "model_offset": 1.0, "target_offset": 1.0, "estimator": "mkl", "normalize": True, "temperature": 1.0}

    def __init__(self, cfg, num_classes, total_steps):  # type: ignore[override]
        super().__init__(cfg, num_classes, total_steps)
        if self.args["direction"] not in ("reverse", "forward"):
            from ..errors import ConfigError

            raise ConfigError(f"method_args.direction must be 'reverse' or 'forward', got {self.args['direction']!r}")

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        a = self.args
        return proxy_dirichlet_loss(
            student_out,
            teacher_log_probs,
            direction=a["direction"],
            model_offset=float(a["model_offset"]),
            target_offset=float(a["target_offset"]),
            estimator=a["estimator"],
            normalize=bool(a["normalize"]),
            temperature=float(a["temperature"]),
        )

    def dirichlet_offset(self) -> float:
        return float(self.args["model_offset"])
