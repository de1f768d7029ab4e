"""Console script ``endist-vision``.

    endist-vision train --config RECIPE --out RUN [--progress auto|on|off] [key.sub=value ...]   (or: torchrun ...)
    endist-vision train --out RUN --resume
    endist-vision evaluate --run RUN [--out DIR] [--teacher RUN ...] [--members N] [--ood NAME[=ROOT] ...]
                           [--shift NAME=DATASET:ROOT ...] [--shift-max-per-set N] [--workers N] [--no-plots]
    endist-vision compare LABEL=EVAL_DIR ... [--out DIR] [--title T] [--maps]
    endist-vision list

Errors in user input print ``error: ...`` naming the flag/file and exit non-zero; existing outputs are
never overwritten by a failing command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, EndistVisionError


def _abs_teacher(cfg: dict[str, Any]) -> None:
    t = cfg["distill"].get("teacher")

    def absolute(x: Any) -> Any:  # a run dir / teacher file, or an external entry {model, kwargs, weights}
        if isinstance(x, dict):
            return {**x, "weights": absolute(x["weights"])} if isinstance(x.get("weights"), str) else x
        return str(Path(x).expanduser().resolve())

    if isinstance(t, (str, dict)):
        cfg["distill"]["teacher"] = absolute(t)
    elif isinstance(t, list):
        cfg["distill"]["teacher"] = [absolute(x) for x in t]
    r = cfg["data"].get("root")
    if r:
        cfg["data"]["root"] = str(Path(r).expanduser().resolve())
    cfg["data"]["shift"] = [_abs_shift(it) for it in (cfg["data"].get("shift") or [])]


def _abs_shift(item: Any) -> dict[str, Any]:
    """A ``data.shift`` entry, checked and in its dict form, with ROOT made absolute (evaluation may run
    from another directory)."""
    from .data.shift import parse_shift_spec

    spec = parse_shift_spec(item, "data.shift")
    return {"name": spec["dataset"], "root": str(Path(spec["root"]).expanduser().resolve()), "label": spec["label"],
            "max_per_set": spec["max_per_set"]}


def cmd_train(a: argparse.Namespace) -> int:
    from .config import build_config, parse_overrides
    from .trainer import resume_config, train

    out = Path(a.out)
    if a.resume:
        if a.config:
            raise ConfigError("--resume uses the run's saved config.yaml; do not pass --config")
        cfg = resume_config(out, parse_overrides(a.overrides))
    else:
        cfg = build_config(a.config, a.overrides)
        _abs_teacher(cfg)
    if a.progress is not None:  # the flag wins over train.progress (null: follow the flag)
        cfg["train"]["progress"] = None
    res = train(cfg, out, resume=a.resume)
    if res:
        v, te = res["val"], res["test"]
        print(f"[{cfg['method']}] {out}: val acc {100 * v['accuracy']:.2f}%  test acc {100 * te['accuracy']:.2f}%  "
              f"test NLL {te['nll']:.4f}  ({res['total_steps']} steps)")
    return 0


def _ood_specs(items: Sequence[str]) -> list[Any]:
    out: list[Any] = []
    for it in items:
        if "=" in it:
            name, root = it.split("=", 1)
            label = Path(root).name if name == "imagefolder" else name
            out.append({"name": name, "root": root, "label": label})
        else:
            out.append(it)
    return out


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .run_eval import EvalOptions, evaluate_run

    opts = EvalOptions(out=a.out, teacher=a.teacher, teacher_members=a.teacher_members, members=a.members,
                       ood=_ood_specs(a.ood) if a.ood is not None else None, shift=a.shift, shift_max_per_set=a.shift_max_per_set,
                       workers=a.workers, data_root=a.data_root, label=a.label, device=a.device, plots=not a.no_plots)
    _, md = evaluate_run(a.run, opts)
    print(md)
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from .io_utils import atomic_write_text
    from .report import compare_markdown, parse_compare_items, plot_uncertainty_maps, read_eval_json, read_uncertainty_map

    files = parse_compare_items(a.evals)
    results = {label: read_eval_json(f) for label, f in files.items()}
    maps = {label: read_uncertainty_map(f.parent / "uncertainty_map.npz") for label, f in files.items()
            if a.maps and (f.parent / "uncertainty_map.npz").is_file()}
    md = compare_markdown(results, a.title or "")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "tables.md", md)
        if maps:
            ext = next(iter(maps.values()))["extent"]
            plot_uncertainty_maps({k: {kk: v[kk] for kk in ("total", "data", "mutual_information")} for k, v in maps.items()}, ext,
                                  out / "uncertainty_maps.png")
    print(md)
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from .config import CONFIG_DIR
    from .data import available_datasets, available_shift_sets
    from .methods import available_methods
    from .models import available_models

    print("models:  ", ", ".join(available_models()))
    print("timm:     timm/<name> for any timm.list_models() entry (never downloaded; local weights: model.kwargs.weights=PATH)")
    print("methods: ", ", ".join(available_methods()))
    print("datasets:", ", ".join(available_datasets()))
    print("shift sets:", ", ".join(available_shift_sets()))
    print("recipes: ", ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))))
    return 0


def _progress_flag(p: argparse.ArgumentParser) -> None:
    from shared.progress import ENV_VAR, MODES

    p.add_argument("--progress", choices=MODES, default=None,
                   help=f"progress bars on stderr: auto = only on a terminal (default: ${ENV_VAR}, else auto)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="endist-vision", description="Image ensembles and ensemble (distribution) distillation.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a model (any method) into a run directory")
    t.add_argument("--config", help="YAML recipe path or name (see `endist-vision list`)")
    t.add_argument("--out", required=True, help="run directory (must be new unless --resume)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("overrides", nargs="*", help="config overrides key.sub=value (YAML values)")
    _progress_flag(t)
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("evaluate", help="evaluate a finished run (ID metrics, PRR, OOD, vs teacher)")
    e.add_argument("--run", required=True)
    e.add_argument("--out", help="output directory (default RUN/eval)")
    e.add_argument("--teacher", nargs="+", help="teacher run dir(s) for the [Hydra] uncertainty gap (default: the run's teacher)")
    e.add_argument("--teacher-members", type=int, default=None)
    e.add_argument("--members", type=int, default=None, help="evaluate only the first N members of an ensemble")
    e.add_argument("--ood", nargs="*", default=None, help="OOD sets NAME or NAME=ROOT (default: the run's data.ood)")
    e.add_argument("--shift", action="extend", nargs="+", default=None, metavar="NAME=DATASET:ROOT",
                   help="labelled shift sets (repeatable; default: the run's data.shift); DATASET one of "
                        "imagenet_a, imagenet_r, imagenet_c, cifar10_c, cifar100_c")
    e.add_argument("--shift-max-per-set", type=int, default=None,
                   help="at most N images per shift (sub)set, a fixed random sample (default: data.shift_max_per_set)")
    e.add_argument("--workers", type=int, default=None, help="DataLoader decoding workers (default: eval.num_workers, else train.num_workers)")
    e.add_argument("--data-root", default=None, help="override data.root of the run (refused for built-in data sets)")
    e.add_argument("--no-plots", action="store_true", help="write eval.json / eval.md (and uncertainty_map.npz) but no figures")
    e.add_argument("--label", default=None)
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _progress_flag(e)
    e.set_defaults(fn=cmd_evaluate)
    c = sub.add_parser("compare", help="paper-style tables from several evaluations")
    c.add_argument("evals", nargs="+", help="LABEL=EVAL_DIR (or eval.json)")
    c.add_argument("--out")
    c.add_argument("--title")
    c.add_argument("--maps", action="store_true", help="also combine 2-D uncertainty maps ([EnD2] Fig. 3)")
    c.set_defaults(fn=cmd_compare)
    sub.add_parser("list", help="registered models, methods, datasets, recipes").set_defaults(fn=cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from ._malloc import tune_malloc  # this command only, never at import (see endist_vision/_malloc.py)
    tune_malloc()
    args = build_parser().parse_args(argv)
    try:
        from shared.progress import set_progress

        try:
            set_progress(getattr(args, "progress", None))
        except ValueError as e:  # a bad ENDIST_PROGRESS
            raise ConfigError(str(e)) from None
        return int(args.fn(args) or 0)
    except EndistVisionError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    finally:
        from shared.progress import reset_progress

        reset_progress()  # the flag holds for this command only (in-process callers, tests)


if __name__ == "__main__":
    sys.exit(main())
