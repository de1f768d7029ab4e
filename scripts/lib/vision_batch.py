"""Run queued `endist-vision` command lines (one shell-quoted command per line) in one Python process.

Smoke mode only: identical to calling the `endist-vision` console script once per line
(`endist_vision.cli.main`), but torch is imported once. `train` lines whose `--out` run already
holds checkpoints/final.pt are skipped, as `vision_train` in scripts/lib/recipe_common.sh does.
Stops at the first failing command with its exit code. `evaluate` lines get `--no-plots` (no PNG figures:
rejection curves, histograms, uncertainty maps) unless SMOKE_FIGURES=1: the tables, eval.json and eval.md are
written as usual; the figures are covered by the endist_vision tests.
"""
import os
import shlex
import sys
from pathlib import Path

from endist_vision.cli import main


def run(queue: str) -> int:
    figures = os.environ.get("SMOKE_FIGURES", "0") == "1"
    for line in Path(queue).read_text().splitlines():
        if not line.strip():
            continue
        argv = shlex.split(line)
        if argv[0] == "evaluate" and not figures and "--no-plots" not in argv:
            argv.append("--no-plots")
        if argv[0] == "train" and "--out" in argv:
            out = Path(argv[argv.index("--out") + 1])
            if (out / "checkpoints" / "final.pt").is_file():
                print(f"skip: {out} is finished", flush=True)
                continue
        print("+ endist-vision " + line, flush=True)
        rc = main(argv)
        if rc:
            print(f"error: endist-vision {argv[0]} failed with exit code {rc}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
