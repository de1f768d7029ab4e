"""Run several `fairseq-generate` command lines (one shell-quoted argument list per line, without the
program name) in one Python process: `fairseq_cli.generate.cli_main` with `sys.argv` set per line, so
torch + fairseq are imported once. Used by the --smoke mode of 23_wmt_generate.sh and by demo part 30
(scripts/demo/30_seq_uncertainty.sh); each line must
carry its own `--results-path` (fairseq writes `generate-<subset>.txt` there). Stops at the first failure.
"""
import shlex
import sys
from pathlib import Path


def run(queue: str) -> int:
    from fairseq_cli.generate import cli_main

    for line in Path(queue).read_text().splitlines():
        if not line.strip():
            continue
        sys.argv = ["fairseq-generate", *shlex.split(line)]
        print("+ " + " ".join(sys.argv), flush=True)
        try:
            cli_main()
        except SystemExit as e:
            if e.code:
                print(f"error: fairseq-generate failed ({e.code}): {line}", file=sys.stderr)
                return int(e.code) if isinstance(e.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
