"""Print ONE table of benchmark ratios with their targets and a PASS/FAIL verdict per row.

    python scripts/benchmarks/bench_table.py [--rows FILE.json ...] [--missing "NAME|TARGET|why" ...]

Each ``--rows`` file is a script's ``--json`` output (``{"rows": [{"name", "median", "min", "max",
"target"[, "note"]}]}``, see ``bench_rows.py``); a file that does not exist (its script failed) gives one
"ERROR" row. ``--missing`` adds a row that was not measured (e.g. a GPU row on a machine without CUDA).
The verdict compares the median with ``target`` (``"<= 3"``, ``">= 1.5"``; ``≤``/``≥``/``<``/``>`` too);
an empty target gives "–". Exit status 0 unless a file is missing or malformed (a FAIL verdict is a
measurement, not an error).
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

TARGET_RE = re.compile(r"^\s*(<=|>=|≤|≥|<|>)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
OPS = {"<=": operator.le, "≤": operator.le, ">=": operator.ge, "≥": operator.ge, "<": operator.lt, ">": operator.gt}


def verdict(median: Optional[float], target: str) -> str:
    """PASS/FAIL of ``median`` against ``target``; "–" without a target; "not measured" without a median."""
    if median is None:
        return "not measured"
    if not target:
        return "–"
    found = TARGET_RE.match(target)
    if found is None:
        raise ValueError(f"target {target!r} is not '<= X' or '>= X'")
    return "PASS" if OPS[found.group(1)](median, float(found.group(2))) else "FAIL"


def _fmt(x: Optional[float]) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"


def load_rows(path: Path) -> List[Dict[str, object]]:
    data = json.loads(path.read_text())
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r for r in rows):
        raise ValueError("expected {\"rows\": [{\"name\": ..., \"median\": ..., ...}]}")
    return rows


def table(rows: List[Dict[str, object]]) -> str:
    lines = ["| benchmark | median | min–max | target | verdict |", "|---|---:|---:|---|---|"]
    for r in rows:
        median = r.get("median")
        spread = "–" if median is None else f"{_fmt(r.get('min'))}–{_fmt(r.get('max'))}"  # type: ignore[arg-type]
        v = r.get("verdict") or verdict(median, str(r.get("target") or ""))  # type: ignore[arg-type]
        if v == "not measured" and r.get("note"):
            v = f"not measured ({r['note']})"
        lines.append(f"| {r['name']} | {_fmt(median)} | {spread} | {r.get('target') or '–'} | {v} |")  # type: ignore[arg-type]
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", action="append", default=[], type=Path, help="a script's --json output")
    p.add_argument("--missing", action="append", default=[], help='"NAME|TARGET|why": a row that was not measured')
    a = p.parse_args(argv)
    rows: List[Dict[str, object]] = []
    status = 0
    for path in a.rows:
        try:
            rows.extend(load_rows(path))
        except (OSError, ValueError) as exc:
            rows.append({"name": path.stem, "median": None, "target": "", "verdict": f"ERROR ({path}: {exc})"})
            status = 1
    for item in a.missing:
        name, target, why = (item.split("|", 2) + ["", ""])[:3]
        rows.append({"name": name, "median": None, "target": target, "note": why or "not run"})
    try:
        print(table(rows))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
