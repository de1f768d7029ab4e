"""``batchensemble``: a BatchEnsemble student ([BE] §3; [LatentBE] §2.3, Alg. 1).

* Student: ``model.name`` with every Conv2d/Linear turned into its rank-one BE version
  (:class:`endist_vision.models.BatchEnsembleNet`), ``members`` members (null: one
  per teacher member), fast weights initialised ``fast_init`` (default ``normal``: r, s ~ N(1, 0.5²) i.i.d.).
* ``objective: kd`` — every member learns the ensemble mean ([BE] "knowledge distillation",
  ``shared.losses.ensemble_kd_loss``; optional AE-KD weights with ``aekd_cap``); ``objective: head`` —
  member m learns teacher m ([BE] "head distillation", [LatentBE] eq. 3, ``shared.losses.hydra_loss``).
* Fast weights r, s form their own optimiser group: lr × ``fast_lr_mult`` (default 0.5), weight decay
  ``fast_weight_decay`` (toward the prior mean, 0 here).
* Defaults follow [BE] §4 ("we used the hyperparameters that provide the state-of-the-art results for batch
  ensemble models"), i.e. the authors' uncertainty-baselines BatchEnsemble WRN-28-10 CIFAR script
  (``baselines/cifar/batchensemble.py``): ``random_sign_init = −0.5``, which its ``make_sign_initializer`` maps to
  ``RandomNormal(mean=1, stddev=0.5)`` (a positive value would mean ±1 random signs with that probability), and
  ``fast_weight_lr_multiplier = 0.5`` (it scales the gradients of every non-kernel, non-BN variable, so also the
  per-member biases; here only r and s are scaled). ``fast_init=random_sign`` / ``fast_lr_mult=1`` give Wen et
  al.'s ±1 init and a shared LR. BatchNorm is shared by the members as in that code base (``member_bn=true``:
  one BatchNorm per member).
* ``teacher_init=true``: BE+INIT ([BE] §4, Tables 1–2) — before the first step the members are set to the
  rank-one reconstruction of the first M teacher members (alternating least squares, [BE] §2 footnote 1;
  :meth:`endist_vision.models.BatchEnsembleNet.init_from_members`).
* Evaluated as an ensemble of its members ``[B, M, K]``.
* Options: :class:`BatchEnsembleConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from torch import nn

from endist_vision.errors import ConfigError
from endist_vision.models import BatchEnsembleNet, raw_net, wrap_like
from endist_vision.models.layers import split_fast_parameters

from ._multimember import DistillConfig, MultiMemberMethod, check_aekd_cap, check_members

from . import register_method


@dataclass
class BEStudentConfig(DistillConfig):
    """Options of the BE-student methods (``batchensemble``, ``latentbe``)."""

    members: int | None = None  # BE members M; null: one per teacher member
    objective: Literal["kd", "head"] = "kd"  # every member vs the ensemble mean | member m vs teacher m
    aekd_cap: float | None = None  # objective=kd only: AE-KD teacher weights with cap C
    fast_lr_mult: float = 1.0  # learning rate of the fast weights r, s relative to train.lr
    fast_weight_decay: float = 0.0  # weight decay of the fast weights (toward the prior mean)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_members(self.members)
        if self.objective == "head" and self.aekd_cap is not None:
            raise ConfigError("method_args.aekd_cap only applies to objective=kd (AE-KD weights the ensemble mean)")
        check_aekd_cap(self.aekd_cap, None)


@dataclass
class BatchEnsembleConfig(BEStudentConfig):
    fast_lr_mult: float = 0.5  # uncertainty-baselines fast_weight_lr_multiplier ([BE] reuses its settings)
    fast_init: Literal["random_sign", "ones", "normal"] = "normal"  # initial r, s: N(1, fast_init_std²) (UB: −0.5)
    fast_init_std: float = 0.5  # std of fast_init=normal
    member_bn: bool = False  # one BatchNorm per member (default: shared, as in the uncertainty-baselines BE WRN)
    teacher_init: bool = False  # BE+INIT ([BE] Tables 1-2): rank-one ALS reconstruction of the teacher members

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fast_init_std >= 0:
            raise ConfigError(f"method_args.fast_init_std must be >= 0, got {self.fast_init_std}")
        if not self.fast_lr_mult > 0:
            raise ConfigError(f"method_args.fast_lr_mult must be > 0, got {self.fast_lr_mult}")


@register_method("batchensemble")
class BatchEnsemble(MultiMemberMethod):
    config_class = BatchEnsembleConfig
    config: BEStudentConfig
    fast_prior = 0.0

    def fast_init(self) -> str:
        return self.config.fast_init  # type: ignore[attr-defined]

    def fast_init_std(self) -> float:
        return float(getattr(self.config, "fast_init_std", 0.5))

    def build_student(self, make_model: Callable[[int], nn.Module]) -> nn.Module:
        base = make_model(int(self.cfg["seed"]))
        try:
            net = BatchEnsembleNet.from_plain(raw_net(base), self.resolved_members(), fast_init=self.fast_init(),  # type: ignore[arg-type]
                                              fast_prior=self.fast_prior, init_std=self.fast_init_std(),
                                              member_bn=bool(getattr(self.config, "member_bn", False)))
        except ValueError as e:
            raise ConfigError(f"model.name={self.cfg['model']['name']} / method_args.fast_init: {e}") from e
        return wrap_like(base, net)

    def init_from_teacher(self, model: nn.Module, teacher: nn.Module) -> None:
        """``teacher_init``: BE+INIT of [BE] §4 — the student's members start from the first M teacher members
        (:meth:`BatchEnsembleNet.init_from_members`, [BE] §2 footnote 1). The teacher must be an ensemble run of
        ``model.name``."""
        if not getattr(self.config, "teacher_init", False):
            return
        members: list[nn.Module] = []
        for t in getattr(teacher, "models", [teacher]):
            net = raw_net(t)
            n = int(getattr(net, "num_members", 1))
            members += [raw_net(net.member(i)) for i in range(n)] if hasattr(net, "member") else [net]
        m = self.resolved_members()
        if len(members) < m:
            raise ConfigError(f"method_args.teacher_init: the teacher has {len(members)} members, the student {m}")
        try:
            raw_net(model).init_from_members(members[:m])
        except (ValueError, RuntimeError, AttributeError) as e:
            raise ConfigError(f"method_args.teacher_init: the teacher members are not {self.cfg['model']['name']} "
                              f"networks of this student's shape ({str(e)[:200]})") from e

    def param_groups(self, model, lr, weight_decay):  # type: ignore[no-untyped-def]
        slow, fast = split_fast_parameters(model)
        return [{"params": slow, "lr": lr, "weight_decay": weight_decay},
                {"params": fast, "lr": lr * self.config.fast_lr_mult, "weight_decay": self.config.fast_weight_decay}]

    def distillation_loss(self, student_out, teacher_log_probs, step, *, labels=None):  # type: ignore[override]
        return self.distill_loss(student_out, teacher_log_probs, self.config.objective)
