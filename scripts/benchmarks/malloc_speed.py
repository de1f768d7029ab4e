#!/usr/bin/env python
"""Effect of endist's glibc malloc settings (``endist_vision/_malloc.py``) on CPU inference, images/s.

``mallopt`` cannot be undone inside a process, so the two contenders are two child processes,
started alternately ``--repeats`` times (on, off, off, on, ...): each builds the same seeded single
network and its BatchEnsemble (M members, one pass over an M·B batch), warms each up once and times
``--iters`` forward passes of each, interleaved, under ``torch.inference_mode`` with a fixed thread
count (``--threads``, default 1, printed). The ratio of repeat *r* is images/s with the settings ÷
images/s without, of the two children of that repeat; the table gives median and min–max.

    python scripts/benchmarks/malloc_speed.py                       # WRN-28-1, 3×32×32, batch 128, M = 4
    python scripts/benchmarks/malloc_speed.py --smoke               # digits CNN, 8×8 (numbers mean nothing)
    python scripts/benchmarks/malloc_speed.py --json OUT            # rows for scripts/benchmarks/bench_table.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rows import row, summary, write_rows  # noqa: E402

MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "ENDIST_MALLOC_TUNING")


def child(a: argparse.Namespace) -> Dict[str, object]:
    """One contender: (optionally) tune malloc first, then images/s of the single net and its BatchEnsemble."""
    applied = False
    if a.child == "on":
        from endist_vision._malloc import tune_malloc

        applied = tune_malloc()
    import torch

    from endist_vision.models import BatchEnsembleNet, create_model

    torch.set_num_threads(a.threads)

    def base() -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(a.model, 10, in_channels=a.in_channels, **json.loads(a.model_kwargs)).net

    models = {"single": base().eval(), "batchensemble": BatchEnsembleNet.from_plain(base(), a.members).eval()}
    x = torch.rand(a.batch_size, a.in_channels, a.image_size, a.image_size)
    seconds: Dict[str, float] = {name: 0.0 for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(x)  # warm-up
        for _ in range(a.iters):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(x)
                seconds[name] += time.perf_counter() - t0
    return {"applied": applied, "threads": torch.get_num_threads(),
            "images_per_s": {name: a.iters * a.batch_size / s for name, s in seconds.items()}}


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", default="wrn28")
    p.add_argument("--model-kwargs", default='{"width": 1}', help="JSON object for the model")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--iters", type=int, default=2, help="timed forward passes of each model per child")
    p.add_argument("--repeats", type=int, default=5, help="on/off child pairs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="digits CNN 1×8×8, batch 64, 1 iteration")
    p.add_argument("--json", help="write the rows here (bench_rows.py format)")
    p.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.smoke:
        a.model, a.model_kwargs, a.batch_size, a.image_size, a.in_channels, a.iters = "digits_cnn", "{}", 64, 8, 1, 1
    for flag in ("members", "batch_size", "image_size", "in_channels", "iters", "repeats", "threads"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(a, flag)}")
    try:
        if not isinstance(json.loads(a.model_kwargs), dict):
            raise ValueError
    except ValueError:
        p.error(f"--model-kwargs must be a JSON object, got {a.model_kwargs!r}")
    if a.child:
        print(json.dumps(child(a)))
        return 0

    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    base_cmd = [sys.executable, __file__, "--model", a.model, "--model-kwargs", a.model_kwargs, "--members", str(a.members),
                "--batch-size", str(a.batch_size), "--image-size", str(a.image_size), "--in-channels", str(a.in_channels),
                "--iters", str(a.iters), "--threads", str(a.threads)]
    ratios: Dict[str, List[float]] = {"single": [], "batchensemble": []}
    print(f"malloc settings on/off: {a.model} {a.model_kwargs} M={a.members}, batch {a.batch_size}, "
          f"{a.in_channels}x{a.image_size}x{a.image_size}, {a.threads} torch thread(s), {a.repeats} alternating child pairs")
    for rep in range(a.repeats):
        got = {}
        for mode in (("on", "off") if rep % 2 == 0 else ("off", "on")):
            proc = subprocess.run([*base_cmd, "--child", mode], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"error: malloc_speed child '{mode}' failed: {(proc.stdout + proc.stderr).strip()[-2000:]}")
            got[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        if not got["on"]["applied"]:
            sys.exit("error: tune_malloc() did not apply (not glibc?): nothing to measure")
        for name in ratios:
            on, off = got["on"]["images_per_s"][name], got["off"]["images_per_s"][name]
            ratios[name].append(on / off)
            print(f"repeat {rep + 1}/{a.repeats}  {name:13s} off {off:9.1f} images/s  on {on:9.1f} images/s  x{on / off:.3f}",
                  flush=True)
    for name, values in ratios.items():
        s = summary(values)
        print(f"{name}: images/s with / without the malloc settings: median x{s['median']:.3f} (min-max {s['min']:.3f}-{s['max']:.3f})")
    if a.json:
        size = f"{a.model} M={a.members} batch {a.batch_size}, CPU"
        write_rows(a.json, [row(f"malloc settings on/off, {name} inference images/s ({size})", values, ">= 1")
                            for name, values in ratios.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
