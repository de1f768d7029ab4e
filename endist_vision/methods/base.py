"""The method contract: one class per training method, registered by name, plugged into the single
trainer (:mod:`endist_vision.trainer`) through hooks. See ``endist_vision/README_internal.md``.

Hook order per optimiser step (for each micro-batch when ``accumulate > 1``)::

    method.on_step_start(step, model, optimizer)       # phase switches (e.g. Hydra phase 2)
    x = method.perturb(x, student=model, teacher=teacher, step=step)   # only if overridden
    out = method.forward(model, x)                     # [B, K] or [B, M, K]
    loss = method.loss(out, teacher_log_probs, step, labels=y)
    (loss / accumulate).backward()
and once after the last step: ``model = method.post_train(model)`` (e.g. LatentBE merge).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from ._config import NoArgs, config_dict, parse_method_args


class Method:
    """Base class. Subclasses set ``name`` (via :func:`endist_vision.methods.register_method`) and
    override :meth:`loss` (and any other hook they need).

    Class attributes:
        needs_teacher: the trainer loads the teacher ensemble (``distill.teacher``) and passes
            ``teacher_log_probs [B, M, K]`` (log-softmax at T = 1) to :meth:`loss`.
        needs_online_teacher: force teacher predictions on the student's (augmented/perturbed)
            batch instead of the cached ones (perturbation methods must set this).
        uses_topk_cache: :meth:`loss` also accepts the compact record of ``distill.teacher_mode=topk_cache``
            (:mod:`shared.teacher_cache`) in place of ``teacher_log_probs``; other methods refuse that mode.
        output: how a ``[B, K]`` output is read by evaluation: ``"categorical"`` (softmax) or
            ``"dirichlet"`` (α = exp(z) + :meth:`dirichlet_offset`). ``[B, M, K]`` outputs are
            always read as an ensemble of categoricals.
        config_class: the dataclass of this method's ``method_args`` config section (defaults, types,
            variants as ``Literal`` choice fields); parsed once in ``__init__``
            (:func:`endist_vision.methods._config.parse_method_args`: unknown keys, wrong types and
            NaN/Inf are a :class:`ConfigError` naming the key).
    """

    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False
    needs_online_teacher: ClassVar[bool] = False
    uses_topk_cache: ClassVar[bool] = False
    output: ClassVar[str] = "categorical"
    config_class: ClassVar[type] = NoArgs

    def __init__(self, cfg: dict[str, Any], num_classes: int, total_steps: int, *,
                 teacher_members: int | None = None) -> None:
        """``cfg``: the run config (read, never written); ``total_steps``: optimiser steps of the run;
        ``teacher_members``: M of the loaded teacher ensemble (None without a teacher)."""
        self.cfg = cfg
        self.num_classes = num_classes
        self.total_steps = total_steps
        self.teacher_members = teacher_members
        self.config = self.parse_config(cfg)

    @classmethod
    def parse_config(cls, cfg: Mapping[str, Any]) -> Any:
        """The validated :attr:`config_class` instance of ``cfg["method_args"]`` (ConfigError naming the key)."""
        return parse_method_args(cls.config_class, cfg.get("method_args"), cls.name)

    @classmethod
    def cache_temperatures(cls, config: Any) -> tuple[float, ...]:
        """Temperatures the loss takes teacher targets at (``topk_cache`` adds them to the cache's temperature grid,
        where the rebuilt targets are exact); only for :attr:`uses_topk_cache` methods."""
        return ()

    @classmethod
    def extra_epochs(cls, config: Any) -> int:
        """Epochs this method trains on top of ``train.epochs`` (e.g. Hydra's phase-1 budget); default 0."""
        return 0

    def phase_starts(self) -> list[int]:
        """Optimiser steps at which the trainer restarts the LR schedule (warm-up + cosine per phase); ``[0]``."""
        return [0]

    @property
    def args(self) -> Mapping[str, Any]:
        """Read-only view of :meth:`resolved_config` (the ``method_args`` in effect)."""
        return MappingProxyType(self.resolved_config())

    def resolved_config(self) -> dict[str, Any]:
        """Every ``method_args`` value in effect (defaults filled in, e.g. ``members`` resolved from the
        teacher); saved in checkpoint meta so evaluation rebuilds the structure without the teacher."""
        return config_dict(self.config)

    # ---- model -------------------------------------------------------------------------------
    def build_student(self, make_model: Callable[[int], nn.Module]) -> nn.Module:
        """Build the trained network. ``make_model(seed)`` builds the configured model
        (``create_model(cfg.model.name, K, **cfg.model.kwargs)``) after seeding its init."""
        return make_model(int(self.cfg["seed"]))

    def init_from_teacher(self, model: nn.Module, teacher: nn.Module) -> None:
        """Called once on a fresh (not resumed) run with a teacher, after :meth:`build_student` (e.g. BE+INIT)."""

    @property
    def num_streams(self) -> int:
        """Independent data streams per step (M for an ensemble trained with separate shuffles)."""
        return 1

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Student forward. ``x`` is ``[B, ...]`` (or ``[S, B, ...]`` when ``num_streams = S > 1``)."""
        return model(x)

    # ---- training ----------------------------------------------------------------------------
    def loss(
        self,
        student_out: torch.Tensor,
        teacher_log_probs: torch.Tensor | None,
        step: int,
        *,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scalar training loss for one (micro-)batch (mean over the batch)."""
        raise NotImplementedError

    def perturb(
        self, x: torch.Tensor, *, student: nn.Module, teacher: nn.Module | None, step: int
    ) -> torch.Tensor:
        """Optionally perturb the raw [0, 1] input batch before the loss (identity by default)."""
        return x

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups (one group by default)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr, "weight_decay": weight_decay}]

    def on_step_start(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called before every optimiser step (phase switches, schedules)."""

    def post_train(self, model: nn.Module) -> nn.Module:
        """Transform the trained model before the final checkpoint (identity by default)."""
        return model

    def build_final(self, make_model: Callable[[int], nn.Module]) -> nn.Module:
        """Structure of the model saved in ``final.pt`` (what :meth:`post_train` returns), used to
        rebuild it for evaluation / as a teacher. Default: :meth:`build_student`."""
        return self.build_student(make_model)

    # ---- bookkeeping -------------------------------------------------------------------------
    def log_values(self, step: int) -> dict[str, float]:
        """Scalars for tensorboard at ``step`` (e.g. the distillation temperature)."""
        return {}

    def batch_log_values(self, student_out: torch.Tensor, teacher_log_probs: torch.Tensor | None) -> dict[str, float]:
        """Scalars of one training batch for tensorboard beyond the trainer's own (α₀, members' diversity:
        :func:`endist_vision.trainer.batch_scalars`); called without gradients, on logged steps only."""
        return {}

    def dirichlet_offset(self) -> float:
        """Offset in α = exp(z) + offset for ``output == "dirichlet"`` students."""
        return 0.0

    def state_dict(self) -> dict[str, Any]:
        """Mutable method state for exact resume (schedules are functions of ``step``; stateless)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def eval_meta(self) -> dict[str, Any]:
        """Saved into checkpoints; tells evaluation how to read outputs."""
        return {"output": self.output, "dirichlet_offset": self.dirichlet_offset(), "method_args": self.resolved_config()}


def resolved_run_config(cfg: dict[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The config of a finished run with ``method_args`` replaced by the resolved method config its
    checkpoint ``meta`` holds (:meth:`Method.eval_meta`); ``cfg`` itself when the meta has none."""
    saved = meta.get("method_args")
    return cfg if saved is None else {**cfg, "method_args": dict(saved)}
