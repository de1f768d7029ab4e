"""Evaluate a finished run: the library behind ``endist-vision evaluate`` (the CLI only parses flags).

:func:`evaluate_run` loads ``RUN/checkpoints/final.pt``, validates every input (``--members``, data,
``--data-root``, OOD and shift sets, teacher, output directory) before predicting anything, computes the
metrics of :mod:`endist_vision.evaluation` and writes, each file atomically,

* ``eval.json`` (all metrics; ``null`` for undefined measures), ``eval.md`` (the tables),
* unless ``plots=False``: ``rejection_curves.png`` and ``hist_*.png`` (ID vs OOD, [EnD2] Fig. 4),
* for 2-D data: ``uncertainty_map.npz`` (+ ``.png`` with plots), [EnD2] Fig. 3.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import check_output_dir, load_run_model, make_output_dir
from .data import DataBundle, ShiftSet, load_dataset, load_shift_sets
from .errors import CheckpointError, ConfigError
from .evaluation import Summary, evaluate_shift, evaluate_summaries, predict, summarize
from .io_utils import atomic_write_json, atomic_write_text
from .report import grid_points, plot_uncertainty_map, single_run_markdown
from .methods import get_method
from .teacher import load_teacher


@dataclass
class EvalOptions:
    """What to evaluate and where (the flags of ``endist-vision evaluate``; None: the run's config)."""

    out: str | Path | None = None  # default RUN/eval
    teacher: list[str] | None = None  # teacher run dir(s) for the [Hydra] uncertainty gap
    teacher_members: int | None = None
    members: int | None = None  # first N members of an ensemble
    ood: list[Any] | None = None  # data.ood specs: NAME or {name, root, label}
    shift: list[Any] | None = None  # data.shift specs
    shift_max_per_set: int | None = None
    workers: int | None = None
    data_root: str | None = None  # replaces data.root of the run
    label: str | None = None
    device: str = "auto"  # auto | cpu | cuda
    plots: bool = True


@dataclass
class EvalInputs:
    """Everything :func:`evaluate_run` needs, loaded and validated."""

    run: Path
    model: nn.Module
    meta: dict[str, Any]
    cfg: dict[str, Any]
    data: DataBundle
    shifts: dict[str, ShiftSet]
    device: torch.device
    batch_size: int
    workers: int
    out: Path
    teacher: nn.Module | None = None
    summaries: dict[str, Summary] = field(default_factory=dict)


def _select_members(model: nn.Module, run: Path, cfg: dict[str, Any], members: int | None) -> nn.Module:
    if not members:
        return model
    if not hasattr(model, "subset"):
        raise ConfigError(f"--members: run {run} ({cfg['method']}) is not an ensemble")
    if not 1 <= members <= model.num_members:
        raise ConfigError(f"--members={members}: run {run} has {model.num_members} members")
    return model.subset(members).eval()


def _data_config(run: Path, cfg: dict[str, Any], opts: EvalOptions) -> dict[str, Any]:
    """The run's ``data`` section with the OOD sets and ``--data-root`` of ``opts``."""
    data_cfg = copy.deepcopy(cfg["data"])
    if opts.ood is not None:
        data_cfg["ood"] = opts.ood
    if opts.data_root:
        if not data_cfg.get("root"):  # built-in (embedded) data sets read no files: the flag would do nothing
            raise ConfigError(f"--data-root {opts.data_root}: run {run} uses data set {data_cfg['name']!r}, which has no "
                              f"data.root (built in); nothing to override")
        data_cfg["root"] = opts.data_root
    return data_cfg


def load_inputs(run: str | Path, opts: EvalOptions) -> EvalInputs:
    """Load and validate model, data, shift sets and teacher of ``run`` (nothing predicted or written yet)."""
    run = Path(run)
    out = Path(opts.out) if opts.out else run / "eval"
    check_output_dir(out, "--out")
    model, meta, cfg = load_run_model(run, "--run")
    model = _select_members(model, run, cfg, opts.members)
    data_cfg = _data_config(run, cfg, opts)
    data = load_dataset(data_cfg)
    if int(meta["num_classes"]) != data.num_classes:
        raise CheckpointError(f"--run {run}: model predicts {meta['num_classes']} classes but data set {data.name!r} has {data.num_classes}")
    shift_flag = "--shift" if opts.shift is not None else "data.shift"
    shift_items = opts.shift if opts.shift is not None else (data_cfg.get("shift") or [])
    cap = opts.shift_max_per_set if opts.shift_max_per_set is not None else data_cfg.get("shift_max_per_set")
    shifts = load_shift_sets(shift_items, data, cap, flag=shift_flag)  # indexed (and validated) before any prediction
    cuda = (opts.device == "auto" and torch.cuda.is_available()) or opts.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    ecfg = cfg.get("eval", {})
    nw = opts.workers if opts.workers is not None else ecfg.get("num_workers")
    nw = int(nw if nw is not None else cfg.get("train", {}).get("num_workers", 0) or 0)
    inputs = EvalInputs(run, model.to(device), meta, cfg, data, shifts, device, int(ecfg.get("batch_size", 512)), nw, out)
    teacher_spec = opts.teacher or (cfg["distill"].get("teacher") if get_method(cfg["method"]).needs_teacher else None)
    if teacher_spec:
        dcfg = {"teacher": teacher_spec, "teacher_members": opts.teacher_members or cfg["distill"].get("teacher_members")}
        inputs.teacher = load_teacher(dcfg, data.num_classes, data.name, data).to(device)
    return inputs


def compute_metrics(inp: EvalInputs) -> dict[str, Any]:
    """eval.json's content: ID, rejection, OOD, shift and teacher-gap metrics; fills ``inp.summaries``."""
    data, dev, bs, nw = inp.data, inp.device, inp.batch_size, inp.workers
    sets = {"val": data.val, "test": data.test, **data.ood}
    inp.summaries = {k: summarize(predict(inp.model, ds, dev, bs, nw, desc=f"predict {k}"), inp.meta) for k, ds in sets.items()}
    teacher_summ = None
    if inp.teacher is not None:
        teacher_summ = {k: summarize(predict(inp.teacher, ds, dev, bs, nw, desc=f"teacher {k}"), {})
                        for k, ds in sets.items() if k != "val"}
    summ = inp.summaries
    res = evaluate_summaries(summ["val"], data.val.y, summ["test"], data.test.y, {k: summ[k] for k in data.ood}, teacher_summ)
    if inp.shifts:
        temp = float(res["test"]["temperature"])  # fitted on the validation split by evaluate_summaries
        res["shift"] = {name: evaluate_shift(inp.model, s, inp.meta, temp, dev, bs, nw) for name, s in inp.shifts.items()}
    res.update({"run": str(inp.run), "method": inp.cfg["method"], "num_members": int(getattr(inp.model, "num_members", 1)),
                "data": data.name})
    return res


def write_uncertainty_map(inp: EvalInputs, label: str, plots: bool) -> None:
    """2-D data: total / data / knowledge uncertainty on a grid ([EnD2] Fig. 3) → ``uncertainty_map.npz`` (+ png)."""
    ecfg = inp.cfg.get("eval", {})
    ext, size = float(ecfg.get("grid_extent", 2.5)), int(ecfg.get("grid_size", 120))
    g = summarize(predict(inp.model, torch.from_numpy(grid_points(ext, size)), inp.device, 4096, desc="uncertainty map"), inp.meta)
    grids = {k: g.unc[k].numpy().reshape(size, size) for k in ("total", "data", "mutual_information")}
    tmp = inp.out / ".uncertainty_map.tmp.npz"
    np.savez(tmp, extent=ext, **grids)
    tmp.replace(inp.out / "uncertainty_map.npz")
    if plots:
        train = inp.data.train
        plot_uncertainty_map(grids, ext, inp.out / "uncertainty_map.png", label, train.x.numpy()[::3], train.y.numpy()[::3])


def write_plots(inp: EvalInputs, label: str) -> None:
    """Rejection curves of the test set and ID-vs-OOD uncertainty histograms ([EnD2] Fig. 4)."""
    from shared.plots import plot_rejection_curves, plot_uncertainty_histograms

    test_s, out = inp.summaries["test"], inp.out
    err = (test_s.log_pred.argmax(-1) != inp.data.test.y).double().numpy()
    rej = {"confidence": -test_s.unc["confidence"].numpy(), "entropy": test_s.unc["total"].numpy()}
    if test_s.has_knowledge:
        rej["mutual information"] = test_s.unc["mutual_information"].numpy()
    plot_rejection_curves(err, rej, str(out / "rejection_curves.png"), title=label)
    if not inp.data.ood:
        return
    for key, name in (("total", "total uncertainty"), ("data", "data uncertainty"), ("mutual_information", "knowledge uncertainty")):
        if key == "mutual_information" and not test_s.has_knowledge:
            continue
        plot_uncertainty_histograms(test_s.unc[key].numpy(), {k: inp.summaries[k].unc[key].numpy() for k in inp.data.ood},
                                    str(out / f"hist_{key}.png"), measure=name, title=label)


def evaluate_run(run: str | Path, opts: EvalOptions | None = None) -> tuple[dict[str, Any], str]:
    """Evaluate the finished run ``run`` and write its outputs (see the module docstring) to ``opts.out``
    (default ``RUN/eval``); returns (eval.json's dict, eval.md's text)."""
    opts = opts or EvalOptions()
    inp = load_inputs(run, opts)
    res = compute_metrics(inp)
    label = opts.label or inp.run.name
    md = single_run_markdown(label, res)
    # ---- everything computed: now write outputs (each file atomically) ----
    make_output_dir(inp.out, "--out")
    if inp.data.input_kind == "points":
        write_uncertainty_map(inp, label, opts.plots)
    if opts.plots:
        write_plots(inp, label)
    atomic_write_json(inp.out / "eval.json", res)
    atomic_write_text(inp.out / "eval.md", md)
    return res, md
