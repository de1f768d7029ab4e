#!/usr/bin/env python
"""Overhead of ``--compute-uncertainty`` over plain ``fairseq-generate`` (issue #4 target: ≤ 10%).

Runs the same model(s), data, beam and batch size through fairseq-generate's own ``main`` in pairs, IN ONE
PROCESS, ``--runs-per-repeat`` pairs per repeat (default 2), alternating the order from pair to pair (plain
first in the even pairs of a repeat, so an even count gives each contender the first place equally often):

* plain:        ``fairseq-generate DATA --user-dir endist_seq --task translation ...``
* uncertainty:  ``fairseq-generate DATA --user-dir endist_seq --task translation_uncertainty --compute-uncertainty ...``

The measure is generation **throughput** of fairseq's generation loop (``task.inference_step``
over all batches, which includes the uncertainty scoring; the ``U-`` lines are written outside it, like fairseq's own
``H-`` lines), in two clocks:

* **sentences per CPU second** — process CPU time spent inside ``inference_step`` (the script wraps
  the two tasks' ``inference_step`` with a clock for its own runs); other processes' load on a shared
  machine hardly moves it: this is the headline overhead;
* **sentences/s** — fairseq's own ``num_sentences / timer`` (wall clock, unrounded timer).

The overhead of repeat *r* is plain throughput ÷ uncertainty throughput, each pooled over its runs of that
repeat (the toy's loop is ~0.14 CPU s, and single runs of the same command vary by ±12% on a quiet machine;
one pair per repeat gave per-repeat ratios of 0.85–1.5); the script prints the median and min–max over ``--repeats`` (≥ 5 for a number you quote),
after ``--warmup`` unrecorded repeats. The torch thread count is fixed (``--threads``, default 1) and
printed. Each run starts after ``gc.collect()``: otherwise Python's full (generation-2) garbage collection of
the ~350k objects of fairseq, hydra and the previous runs' models lands inside some runs' loops (0.2–0.3 CPU s,
more than the whole toy loop), which made the per-repeat ratio swing between 0.4 and 1.7. Also recorded: **wall** (the whole ``main`` call: task, models, data, generation, output).
It checks that the two runs of every pair write identical hypotheses. With ``--ep-share`` it also runs
``ep_measures_share.py`` ``--repeats`` times: the time of the expectation-of-products measures (issue 14)
relative to the generation loop without them (median ``ep_extra``; issue 14's target ≤ 3%), and the
scoring's CPU time (keeping the search's decoder states, then the measures) relative to the search within the same
runs (``rescore_extra``, of which the hypotheses' distributions from the kept states ``forcing_extra``). Usage::

    python scripts/benchmarks/generate_overhead.py --data DATA_BIN --paths a.pt:b.pt [--subset test]
    python scripts/benchmarks/generate_overhead.py --toy-dir bench_output/toy   # builds the toy teachers if needed
    python scripts/benchmarks/generate_overhead.py --toy-layers 3 --toy-dim 256   # a 3-layer, 256-dim pair (trained once)

Writes ``--out`` (JSON, default ``bench_output/generate_overhead.json``) atomically, and with
``--json OUT`` the overhead row in the format of ``scripts/benchmarks/bench_rows.py``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rows import row, summary, write_rows  # noqa: E402

RATE_RE = re.compile(r"Translated ([\d,]+) sentences \([\d,]+ tokens\) in [\d.]+s \(([\d.]+) sentences/s")
TARGET = "<= 1.1"


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    env["PYTHONWARNINGS"] = "ignore"
    return env


class _RateCapture(logging.Handler):
    """Keeps fairseq-generate's "Translated N sentences ... (X sentences/s ...)" line of the last run."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.match: "re.Match[str] | None" = None

    def emit(self, record: logging.LogRecord) -> None:
        found = RATE_RE.search(record.getMessage())
        if found is not None:
            self.match = found


class _LoopClock:
    """Process CPU seconds spent in the outermost ``inference_step`` calls (nested super() calls count once)."""

    def __init__(self) -> None:
        self.depth = 0
        self.cpu = 0.0

    def wrap(self, method):  # type: ignore[no-untyped-def]
        @functools.wraps(method)
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            if self.depth:
                return method(*args, **kwargs)
            self.depth += 1
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.cpu += time.process_time() - start
                self.depth -= 1
        return timed

    def install(self) -> None:
        """Clock the two tasks' ``inference_step`` (fairseq's base task and endist's uncertainty task)."""
        from fairseq.tasks.fairseq_task import FairseqTask

        from endist_seq.tasks.translation_uncertainty import TranslationUncertaintyTask

        for cls in (FairseqTask, TranslationUncertaintyTask):
            cls.inference_step = self.wrap(cls.__dict__["inference_step"])


def _generate(argv: List[str], results: Path, subset: str, capture: _RateCapture,
              clock: _LoopClock) -> Tuple[float, float, float, List[str]]:
    """One fairseq-generate ``main`` in this process: (sentences/CPU s, sentences/s, wall s, hypothesis lines)."""
    from fairseq import options
    from fairseq_cli import generate

    args = options.parse_args_and_arch(options.get_generation_parser(), input_args=[*argv, "--results-path", str(results)])
    capture.match, clock.cpu = None, 0.0
    gc.collect()  # no full collection of the previous runs' garbage inside this run's clock (it cost 0.2-0.3 s)
    start = time.perf_counter()
    try:
        generate.main(args)
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        sys.exit(f"error: fairseq-generate {' '.join(argv)}: {type(exc).__name__}: {exc}")
    wall = time.perf_counter() - start
    if capture.match is None or clock.cpu <= 0:
        sys.exit(f"error: no 'Translated ... sentences/s' line from fairseq-generate {' '.join(argv)}")
    sentences = int(capture.match.group(1).replace(",", ""))
    lines = (results / f"generate-{subset}.txt").read_text(encoding="utf-8").splitlines()
    return sentences / clock.cpu, float(capture.match.group(2)), wall, [line for line in lines if line.startswith("H-")]


def _toy(toy_dir: Path, layers: int = 0, dim: int = 0, updates: int = 150) -> Tuple[Path, str]:
    """The toy pair of teachers (``scripts/seq/toy_model.args``); with ``layers``/``dim``, a pair of that size
    trained for ``updates`` updates on the same toy data (timing-representative, not good translations)."""
    if not layers:
        paths = [toy_dir / "teachers" / f"teacher{i}" / "checkpoint_last.pt" for i in (1, 2)]
        if not all(p.is_file() for p in paths):
            env = _env() | {"TEACHERS": "2", "PYTHON": sys.executable}
            subprocess.run(["bash", str(REPO / "scripts/seq/toy_pipeline.sh"), str(toy_dir), "teachers"], cwd=REPO, env=env, check=True)
        return toy_dir / "data-bin", ":".join(map(str, paths))
    if not (toy_dir / "data-bin" / "dict.en.txt").is_file():
        env = _env() | {"PYTHON": sys.executable}
        subprocess.run(["bash", str(REPO / "scripts/seq/toy_pipeline.sh"), str(toy_dir), "data"], cwd=REPO, env=env, check=True)
    root = toy_dir / f"teachers_l{layers}_d{dim}"
    paths = [root / f"teacher{i}" / "checkpoint_last.pt" for i in (1, 2)]
    heads = 4 if dim % 4 == 0 else 1
    for seed, path in enumerate(paths, start=1):
        if path.is_file():
            continue
        tmp = Path(f"{path.parent}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        cmd = [str(BIN / "fairseq-train"), str(toy_dir / "data-bin"), "--user-dir", str(REPO / "endist_seq"), "--task", "translation",
               "--seed", str(seed), "--arch", "transformer", "--share-decoder-input-output-embed",
               "--encoder-layers", str(layers), "--decoder-layers", str(layers), "--encoder-embed-dim", str(dim),
               "--decoder-embed-dim", str(dim), "--encoder-ffn-embed-dim", str(2 * dim), "--decoder-ffn-embed-dim", str(2 * dim),
               "--encoder-attention-heads", str(heads), "--decoder-attention-heads", str(heads),
               "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--cpu", "--num-workers", "0",
               "--data-buffer-size", "0", "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--lr", "1e-3",
               "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50", "--batch-size", "64", "--dropout", "0.1",
               "--max-update", str(updates), "--disable-validation", "--no-epoch-checkpoints", "--log-format", "simple",
               "--save-dir", str(tmp)]
        with open(tmp / "train.log", "w") as log:
            if subprocess.run(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                sys.exit(f"error: training the {layers}-layer {dim}-dim toy teacher {seed} failed (log: {tmp / 'train.log'})")
        os.replace(tmp, path.parent)
    return toy_dir / "data-bin", ":".join(map(str, paths))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="fairseq data-bin directory")
    parser.add_argument("--paths", help="checkpoints, colon-separated (an ensemble) or one")
    parser.add_argument("--toy-dir", type=Path, default=Path("bench_output/toy"), help="toy pipeline dir (used without --data)")
    parser.add_argument("--toy-layers", type=int, default=0,
                        help="without --data: use (and train once, into TOY_DIR/teachers_l<L>_d<D>) a pair of toy teachers "
                             "with this many encoder and decoder layers (0: the toy pipeline's teachers)")
    parser.add_argument("--toy-dim", type=int, default=256, help="embedding dimension of the --toy-layers teachers")
    parser.add_argument("--toy-updates", type=int, default=150, help="training updates of the --toy-layers teachers")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--nbest", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed and printed; default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="recorded repeats (of --runs-per-repeat pairs each)")
    parser.add_argument("--runs-per-repeat", type=int, default=2,
                        help="plain/uncertainty pairs per repeat (order alternating; even: each contender first equally "
                             "often), pooled into the repeat's ratio")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded repeats first")
    parser.add_argument("--out", type=Path, default=Path("bench_output/generate_overhead.json"))
    parser.add_argument("--ep-share", action="store_true", help="also time the EP chain-rule measures in-process")
    parser.add_argument("--json", type=Path, help="write the overhead row here (bench_rows.py format)")
    args = parser.parse_args()
    if (args.data is None) != (args.paths is None):
        parser.error("give both --data and --paths, or neither (then the toy teachers are used)")
    for flag in ("repeats", "runs_per_repeat", "threads", "beam", "nbest", "batch_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.toy_layers < 0 or args.toy_dim < 1 or args.toy_updates < 1:
        parser.error("--toy-layers must be >= 0, --toy-dim and --toy-updates >= 1")
    data, paths = (args.data, args.paths) if args.data else _toy(args.toy_dir, args.toy_layers, args.toy_dim, args.toy_updates)
    if not Path(data).is_dir():
        parser.error(f"--data {data}: not a directory")

    warnings.simplefilter("ignore")  # hydra/fairseq deprecation chatter on every run
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # fairseq's own basicConfig is then a no-op
    logging.getLogger().handlers[0].setLevel(logging.WARNING)
    capture = _RateCapture()
    gen_logger = logging.getLogger("fairseq_cli.generate")
    gen_logger.setLevel(logging.INFO)
    gen_logger.addHandler(capture)
    clock = _LoopClock()
    clock.install()

    common = [str(data), "--path", paths, "--gen-subset", args.subset, "--beam", str(args.beam), "--nbest", str(args.nbest),
              "--batch-size", str(args.batch_size), "--cpu", "--num-workers", "0", "--user-dir", str(REPO / "endist_seq")]
    cmds = {"plain": [*common, "--task", "translation"],
            "uncertainty": [*common, "--task", "translation_uncertainty", "--compute-uncertainty"]}
    runs: Dict[str, Dict[str, list]] = {name: {"sentences_per_cpu_s": [], "sentences_per_s": [], "wall": [],
                                               "single_runs_sentences_per_cpu_s": []} for name in cmds}
    ratios: Dict[str, List[float]] = {"cpu_throughput": [], "throughput": [], "wall": []}
    hyps: Dict[str, List[str]] = {}
    print(f"torch threads {torch.get_num_threads()}; {args.warmup} warm-up + {args.repeats} recorded repeats of "
          f"{args.runs_per_repeat} plain/uncertainty pairs each, order alternating", flush=True)
    with tempfile.TemporaryDirectory(prefix="generate_overhead.") as tmp:
        for rep in range(-args.warmup, args.repeats):
            # K pairs per repeat, the order alternating pair by pair (AB BA ...); a contender's repeat value is its
            # throughput over its K runs (seconds per sentence summed), so run-to-run noise averages out
            seconds: Dict[str, List[float]] = {name: [0.0, 0.0, 0.0] for name in cmds}  # CPU s, fairseq s, wall s per sentence
            single: Dict[str, List[float]] = {name: [] for name in cmds}  # each run's sentences per CPU s
            for k in range(args.runs_per_repeat):
                order = list(cmds) if k % 2 == 0 else list(cmds)[::-1]
                for name in order:
                    cpu_rate, rate, wall, hyps[name] = _generate(cmds[name], Path(tmp) / f"{name}{rep}_{k}", args.subset,
                                                                 capture, clock)
                    single[name].append(cpu_rate)
                    for i, value in enumerate((1 / cpu_rate, 1 / rate, wall)):
                        seconds[name][i] += value
                if hyps["plain"] != hyps["uncertainty"]:
                    sys.exit("error: --compute-uncertainty changed the hypotheses")
            if rep < 0:
                continue
            got = {name: (args.runs_per_repeat / cpu, args.runs_per_repeat / fair, wall / args.runs_per_repeat, None)
                   for name, (cpu, fair, wall) in seconds.items()}
            for name, (cpu_rate, rate, wall, _) in got.items():
                runs[name]["sentences_per_cpu_s"].append(cpu_rate)
                runs[name]["sentences_per_s"].append(rate)
                runs[name]["wall"].append(wall)
                runs[name]["single_runs_sentences_per_cpu_s"].append(single[name])
            (p_cpu, p_rate, p_wall, _), (u_cpu, u_rate, u_wall, _) = got["plain"], got["uncertainty"]
            ratios["cpu_throughput"].append(p_cpu / u_cpu)
            ratios["throughput"].append(p_rate / u_rate)
            ratios["wall"].append(u_wall / p_wall)
            print(f"repeat {rep + 1}/{args.repeats}  sentences per CPU s: plain {p_cpu:9.2f} uncertainty {u_cpu:9.2f}"
                  f" overhead x{p_cpu / u_cpu:.4f} | sentences/s: {p_rate:9.2f} {u_rate:9.2f} x{p_rate / u_rate:.4f}", flush=True)
    stats = {key: summary(values) for key, values in ratios.items()}
    result = {
        "config": {"data": str(data), "paths": paths, "subset": args.subset, "beam": args.beam, "nbest": args.nbest,
                   "batch_size": args.batch_size, "repeats": args.repeats, "runs_per_repeat": args.runs_per_repeat,
                   "warmup": args.warmup,
                   "threads": torch.get_num_threads()},
        "runs": runs,
        "per_repeat_ratio": ratios,
        "ratio": stats,
        "ratio_cpu_throughput": stats["cpu_throughput"]["median"],
        "ratio_throughput": stats["throughput"]["median"],
        "ratio_wall": stats["wall"]["median"],
        "identical_hypotheses": True,
    }
    if args.ep_share:
        shares = []
        for rep in range(args.repeats):
            proc = subprocess.run([sys.executable, str(REPO / "scripts/benchmarks/ep_measures_share.py"), *cmds["uncertainty"], "--quiet"],
                                  cwd=REPO, env=_env(), capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("EP_SHARE ")]
            if proc.returncode != 0 or not line:
                sys.exit(f"error: ep_measures_share.py failed:\n{proc.stderr[-2000:]}")
            shares.append(json.loads(line[-1][len("EP_SHARE "):]))
            print(f"repeat {rep + 1}/{args.repeats} EP measures {shares[-1]['ep_s']:.4f} CPU s of generation loop "
                  f"{shares[-1]['inference_s']:.2f} CPU s: +{100 * shares[-1]['ep_extra']:.2f}%; all scoring "
                  f"+{100 * shares[-1]['rescore_extra']:.2f}% of the search, of which the distributions "
                  f"+{100 * shares[-1]['forcing_extra']:.2f}%", flush=True)
        result["ep_share_runs"] = shares
        result["ep_extra"] = statistics.median(s["ep_extra"] for s in shares)
        result["rescore_extra"] = statistics.median(s["rescore_extra"] for s in shares)
        result["forcing_extra"] = statistics.median(s["forcing_extra"] for s in shares)
    c, t = stats["cpu_throughput"], stats["throughput"]
    print(f"overhead (median of {args.repeats}): generation loop sentences per CPU second plain/uncertainty x{c['median']:.4f} "
          f"(min-max {c['min']:.4f}-{c['max']:.4f}); sentences/s x{t['median']:.4f} (min-max {t['min']:.4f}-{t['max']:.4f}); "
          f"whole main() wall x{stats['wall']['median']:.3f}  (target <= 1.10)")
    if args.ep_share:
        print(f"EP chain-rule measures (median of {args.repeats}): +{100 * result['ep_extra']:.2f}% of the generation loop "
              "without them (target <= 3%)")
        print(f"inside one uncertainty run (median of {args.repeats}): scoring +{100 * result['rescore_extra']:.2f}% of the "
              f"search, the distributions alone +{100 * result['forcing_extra']:.2f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_out = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(result, handle, indent=2)
    os.replace(tmp_out, args.out)
    if args.json:
        what = f"{len(paths.split(':'))} models, beam {args.beam}"
        if not args.data and args.toy_layers:
            what += f", {args.toy_layers}-layer {args.toy_dim}-dim toy teachers"
        write_rows(args.json, [
            row(f"fairseq-generate --compute-uncertainty overhead, CPU (plain/uncertainty sentences per CPU s; {what})",
                ratios["cpu_throughput"], TARGET),
            row(f"fairseq-generate --compute-uncertainty overhead, CPU (plain/uncertainty sentences/s wall; {what})",
                ratios["throughput"], TARGET),
            *([row(f"fairseq-generate --compute-uncertainty overhead inside one run, CPU ((search + scoring) / search "
                   f"CPU s; {what})", [1 + s["rescore_extra"] for s in result["ep_share_runs"]], TARGET),
               row(f"EP chain-rule measures / generation loop without them, CPU ({what})",
                   [s["ep_extra"] for s in result["ep_share_runs"]], "<= 0.03")] if args.ep_share else [])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
