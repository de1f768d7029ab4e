"""``endist-seq-eval``: BLEU, PRR and OOD detection report from uncertainty-aware generate outputs.

Usage::

    endist-seq-eval --out-dir report \\
        --model ensemble --id ens/test.txt --ood permuted=ens/test1.txt --ood unseen=ens/test2.txt \\
        --model EnD      --id end/test.txt --ood permuted=end/test1.txt --ood unseen=end/test2.txt \\
        --model Proxy-EnD2 --id pe/test.txt --ood permuted=pe/test1.txt --ood unseen=pe/test2.txt

Each ``--model NAME`` starts a group; ``--id`` (in-domain output, with ``T-``
references) and ``--ood NAME=FILE`` (repeatable) belong to the group they follow.
Without any ``--model`` the single group is called ``model``. Inputs are the text
outputs of ``fairseq-generate --task translation_uncertainty --compute-uncertainty``
or its ``--uncertainty-jsonl`` files (``*.jsonl``).

Writes ``OUT/seq_eval.md`` (also printed), ``OUT/seq_eval.json`` and PNGs
(rejection curves, ID-vs-OOD histograms of the headline measures), each file
atomically. Metric definitions: :mod:`endist_seq.seq_eval`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from shared.io import atomic_write_text
from shared.progress import ENV_VAR, MODES, progress, reset_progress, set_progress
from endist_seq.generation.measure_names import current_name
from endist_seq.generation.parse import GenerateOutputError, read_generate_output
from endist_seq.seq_eval import (
    AGGREGATES,
    DEFAULT_HEADLINE,
    ModelOutputs,
    OODSet,
    evaluate_model,
    render_markdown,
    write_plots,
)


class CliError(Exception):
    """Bad command line or input: printed as ``endist-seq-eval: error: ...``, exit status 2."""


def _global_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="endist-seq-eval",
        description="BLEU, sequence-level PRR and OOD ROC/PR-AUC per uncertainty measure "
        "([Proxy] Tables 3-4) from fairseq-generate --compute-uncertainty outputs.",
        epilog="Model groups: --model NAME --id FILE [--ood NAME=FILE ...], repeatable.",
    )
    parser.add_argument("--out-dir", required=True, help="directory for seq_eval.md, seq_eval.json and PNGs")
    parser.add_argument(
        "--aggregate", choices=AGGREGATES, default="top1",
        help="use the top-1 hypothesis' measures (U- rank 0) or the n-best posterior-weighted ones (UW-)",
    )
    parser.add_argument(
        "--headline", default=",".join(f"{label}={m}" for label, m in DEFAULT_HEADLINE),
        help="headline columns LABEL=MEASURE,... (default: %(default)s)",
    )
    parser.add_argument("--title", default="Sequence-level uncertainty (endist)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    parser.add_argument(
        "--progress", choices=MODES, default=None,
        help=f"progress bars on stderr: auto = only on a terminal (default: ${ENV_VAR}, else auto)",
    )
    return parser


def _group_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="endist-seq-eval --model NAME", add_help=False)
    parser.add_argument("--id", required=True, help="in-domain generate output (with T- references)")
    parser.add_argument("--ood", action="append", default=[], metavar="NAME=FILE", help="OOD generate output")
    return parser


def split_groups(argv: Sequence[str]) -> Tuple[List[str], List[Tuple[str, List[str]]]]:
    """Global arguments and ``(model name, group arguments)`` pairs."""
    argv = list(argv)
    if "--model" not in argv:
        global_args, group = [], []
        i = 0
        while i < len(argv):
            if argv[i] in ("--id", "--ood") or argv[i].startswith(("--id=", "--ood=")):
                take = 1 if "=" in argv[i] else 2
                group += argv[i : i + take]
                i += take
            else:
                global_args.append(argv[i])
                i += 1
        return global_args, ([("model", group)] if group else [])
    first = argv.index("--model")
    global_args, groups = argv[:first], []
    i = first
    while i < len(argv):
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
            raise CliError("--model needs a NAME")
        name, j = argv[i + 1], i + 2
        while j < len(argv) and argv[j] != "--model":
            j += 1
        groups.append((name, argv[i + 2 : j]))
        i = j
    return global_args, groups


def parse_headline(spec: str) -> List[Tuple[str, str]]:
    pairs = []
    for item in spec.split(","):
        label, sep, measure = item.partition("=")
        if not sep or not label.strip() or not measure.strip():
            raise CliError(f"--headline: expected LABEL=MEASURE[,LABEL=MEASURE...], got {spec!r}")
        pairs.append((label.strip(), current_name(measure.strip())))  # old names (avg_total, du, ...) accepted
    return pairs


def load_group(name: str, args: Sequence[str], aggregate: str) -> ModelOutputs:
    parser = _group_parser()
    try:
        ns, unknown = parser.parse_known_args(list(args))
    except SystemExit:
        raise CliError(f"--model {name}: --id FILE is required") from None
    if unknown:
        raise CliError(f"--model {name}: unrecognised arguments: {' '.join(unknown)}")
    bar = progress(desc=f"reading {name}", total=1 + len(ns.ood), unit="file")
    try:
        id_sents = read_generate_output(ns.id, require_references=True)
        bar.update()
        ood: List[OODSet] = []
        for spec in ns.ood:
            ood_name, sep, path = spec.partition("=")
            if not sep or not ood_name or not path:
                raise CliError(f"--model {name}: --ood expects NAME=FILE, got {spec!r}")
            if any(o.name == ood_name for o in ood):
                raise CliError(f"--model {name}: OOD set {ood_name!r} given twice")
            ood.append(OODSet(ood_name, path, read_generate_output(path)))
            bar.update()
    except GenerateOutputError as err:
        raise CliError(f"--model {name}: {err}") from None
    finally:
        bar.close()
    if aggregate == "weighted":
        for sents, path in [(id_sents, ns.id)] + [(o.sentences, o.path) for o in ood]:
            if any(s.weighted is None for s in sents):
                raise CliError(f"--aggregate weighted: {path} has sentences without UW- lines")
    return ModelOutputs(name, ns.id, id_sents, ood)




def run(argv: Sequence[str]) -> Dict[str, object]:
    """Parse ``argv``, evaluate every model group, write the report; returns the JSON document."""
    global_args, groups = split_groups(argv)
    args = _global_parser().parse_args(global_args)
    if not groups:
        raise CliError("give at least one model: --model NAME --id FILE [--ood NAME=FILE ...] (or just --id FILE)")
    names = [g[0] for g in groups]
    if len(set(names)) != len(names):
        raise CliError(f"--model names must be unique, got {names}")
    try:
        set_progress(args.progress)
    except ValueError as err:  # a bad ENDIST_PROGRESS
        raise CliError(str(err)) from None
    headline = parse_headline(args.headline)
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise CliError(f"--out-dir {args.out_dir} exists and is not a directory")
    models = [load_group(name, group, args.aggregate) for name, group in groups]
    for model in models:
        known = set(model.id_sentences[0].measures[0])
        missing = [m for _, m in headline if m not in known]
        if missing:
            raise CliError(f"--headline: {model.id_path} has no measure(s) {missing}; available: {sorted(known)}")
    results = {m.name: evaluate_model(m, args.aggregate) for m in progress(models, desc="evaluating", unit="model")}
    markdown = render_markdown(results, headline, args.aggregate, args.title)
    os.makedirs(args.out_dir, exist_ok=True)
    plots: Dict[str, List[str]] = {}
    if not args.no_plots:
        for model in models:
            plots[model.name] = write_plots(model, args.out_dir, [m for _, m in headline], args.aggregate)
    document: Dict[str, object] = {
        "aggregate": args.aggregate,
        "headline": dict(headline),
        "models": results,
        "plots": plots,
        "notes": "prr, roc_auc, pr_auc, fpr_at_95_tpr are fractions (markdown shows %); "
        "null = measure undefined for the model; uncertainty = -value for score, pe_confidence and ep_confidence",
    }
    atomic_write_text(os.path.join(args.out_dir, "seq_eval.json"), json.dumps(document, indent=2) + "\n")
    atomic_write_text(os.path.join(args.out_dir, "seq_eval.md"), markdown)
    print(markdown, end="")
    return document


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's import leaves the root logger verbose
    try:
        run(sys.argv[1:] if argv is None else argv)
    except CliError as err:
        print(f"endist-seq-eval: error: {err}", file=sys.stderr)
        return 2
    finally:
        reset_progress()  # the flag holds for this command only (in-process callers, tests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
