"""Run several ``fairseq-generate`` commands in one Python process (test helper).

Usage: ``python tests/seq/generate_batch.py RUNS.json``. RUNS.json is a list of
runs; a run is either the argument list that would follow ``fairseq-generate``
or ``{"args": [...], "expect_error": "substring"}`` for a command that must fail.

Each run calls ``fairseq_cli.generate.cli_main`` — the function behind the
``fairseq-generate`` executable — with ``sys.argv`` set to its arguments, so the
import of torch + fairseq (several seconds on the test machine) is paid once
per batch instead of once per command. Every run writes to its own
``--results-path`` (fairseq's ``generate-<subset>.txt``); an expected failure
writes its error message to ``<results-path>/error.txt``. Exits non-zero, naming
the run, if a run fails unexpectedly or an expected failure does not happen.
"""

import json
import os
import sys
from typing import Any, Dict, List


def _as_run(entry: Any) -> Dict[str, Any]:
    return {"args": entry, "expect_error": None} if isinstance(entry, list) else dict(entry)


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        runs: List[Dict[str, Any]] = [_as_run(e) for e in json.load(handle)]
    from fairseq_cli.generate import cli_main

    for k, run in enumerate(runs):
        args = [str(a) for a in run["args"]]
        if "--results-path" not in args:
            print(f"run {k}: --results-path is required", file=sys.stderr)
            return 2
        results = args[args.index("--results-path") + 1]
        sys.argv = ["fairseq-generate", *args]
        expected = run.get("expect_error")
        try:
            cli_main()
        except Exception as err:  # noqa: BLE001 - reported below
            if expected is None or expected not in str(err):
                print(f"run {k} failed: {' '.join(sys.argv)}: {err!r}", file=sys.stderr)
                raise
            os.makedirs(results, exist_ok=True)
            with open(os.path.join(results, "error.txt"), "w", encoding="utf-8") as handle:
                handle.write(str(err))
            continue
        if expected is not None:
            print(f"run {k} should have failed with {expected!r}: {' '.join(sys.argv)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
