"""``batchensemble``: a BatchEnsemble student ([BE] §3; [LatentBE] §2.3, Alg. 1).

* Student: ``model.name`` with every Conv2d/Linear turned into its rank-one BE version
  (:class:`endist_vision.multimember.batchensemble.BatchEnsembleNet`), ``members`` members (null: one
  per teacher member), fast weights initialised ``fast_init`` (random ±1 as in Wen et al.).
* ``objective: kd`` — every member learns the ensemble mean ([BE] "knowledge distillation",
  ``shared.losses.ensemble_kd_loss``; optional AE-KD weights with ``aekd_cap``); ``objective: head`` —
  member m learns teacher m ([BE] "head distillation", [LatentBE] eq. 3, ``shared.losses.hydra_loss``).
* Fast weights r, s form their own optimiser group: lr × ``fast_lr_mult``, weight decay
  ``fast_weight_decay`` (toward the prior mean, 0 here).
* Evaluated as an ensemble of its members ``[B, M, K]``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from endist_vision.errors import ConfigError
from endist_vision.models import BatchEnsembleNet, raw_net, wrap_like
from endist_vision.models.layers import split_fast_parameters

from ._multimember import PERTURBATION_DEFAULTS, MultiMemberMethod, check_aekd_cap

from . import register_method

BE_DEFAULTS: dict[str, Any] = {
    "temperature": 2.5, "members": None, "objective": "kd", "aekd_cap": None,
    "fast_lr_mult": 1.0, "fast_weight_decay": 0.0, **PERTURBATION_DEFAULTS,
}


@register_method("batchensemble")
class BatchEnsemble(MultiMemberMethod):
    defaults = {**BE_DEFAULTS, "fast_init": "random_sign"}
    fast_prior = 0.0

    def __init__(self, cfg, num_classes, total_steps):  # type: ignore[no-untyped-def]
        super().__init__(cfg, num_classes, total_steps)
        if self.args["objective"] not in ("kd", "head"):
            raise ConfigError(f"method_args.objective must be kd|head, got {self.args['objective']!r}")
        if self.args["objective"] == "head" and self.args.get("aekd_cap") is not None:
            raise ConfigError("method_args.aekd_cap only applies to objective=kd (AE-KD weights the ensemble mean)")
        if self.args.get("aekd_cap") is not None:
            check_aekd_cap(cfg, float(self.args["aekd_cap"]))

    def fast_init(self) -> str:
        return str(self.args["fast_init"])

    def build_student(self, make_model: Callable[[int], nn.Module]) -> nn.Module:
        base = make_model(int(self.cfg["seed"]))
        try:
            net = BatchEnsembleNet.from_plain(raw_net(base), self.resolve_members(), fast_init=self.fast_init(),  # type: ignore[arg-type]
                                              fast_prior=self.fast_prior)
        except ValueError as e:
            raise ConfigError(f"model.name={self.cfg['model']['name']} / method_args.fast_init: {e}") from e
        return wrap_like(base, net)

    def param_groups(self, model, lr, weight_decay):  # type: ignore[no-untyped-def]
        slow, fast = split_fast_parameters(model)
        return [{"params": slow, "lr": lr, "weight_decay": weight_decay},
                {"params": fast, "lr": lr * float(self.args["fast_lr_mult"]),
                 "weight_decay": float(self.args["fast_weight_decay"])}]

    def loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        return self.distill_loss(student_out, teacher_log_probs, str(self.args["objective"]))
