"""Print a paper table (rows = models, columns = metrics) from JSON files written by the recipes
(`endist-vision evaluate`'s eval.json, a run's metrics.json, a runtime JSON), in Markdown.

    python scripts/lib/eval_table.py --title "Table 4 ..." --out tables.md [--append] \\
        --col "ACC=eval:shift/{shift}/mean/accuracy:pct2" --col "NLL=eval:shift/{shift}/mean/nll:f3" \\
        --row "CIFAR-10-C:" \\
        --row "KD" eval=runs/.../eval/eval.json @shift=CIFAR-10-C ...

* ``--col HEADER=SOURCE:PATH:FORMAT``: SOURCE names a file of the row, PATH is a ``/``-separated key
  path into its JSON (``{var}`` is replaced by the row's ``@var=value``), FORMAT one of
  ``pct2`` / ``pct1`` (×100), ``f1`` / ``f2`` / ``f3`` / ``f4``, ``hours`` (seconds → hours, 2 decimals),
  ``sec`` (seconds, 1 decimal).
* ``--row LABEL SOURCE=FILE ... @VAR=VALUE ...``: one table row; a label ending in ``:`` with no
  files is a section row (as the paper's "CIFAR-10-C:" lines).
* A missing file stops with exit code 2 naming it; a ``null`` value (a measure evaluation.py leaves undefined,
  e.g. RMI of a single model) or a missing key prints ``–``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

UNDEFINED = "–"  # cell of an undefined measure, as in the papers' tables
FORMATS = {
    "pct2": lambda v: f"{100 * v:.2f}", "pct1": lambda v: f"{100 * v:.1f}",
    "f1": lambda v: f"{v:.1f}", "f2": lambda v: f"{v:.2f}", "f3": lambda v: f"{v:.3f}", "f4": lambda v: f"{v:.4f}",
    "hours": lambda v: f"{v / 3600:.2f}", "sec": lambda v: f"{v:.1f}",
}


def fmt(kind: str, v: float) -> str:
    s = FORMATS[kind](v)
    return s[1:] if s.startswith("-") and not s.strip("-0.") else s   # no "-0.000"


def lookup(doc: Any, path: str) -> Any:
    for key in path.split("/"):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def parse_col(spec: str) -> tuple[str, str, str, str]:
    head, _, rest = spec.partition("=")
    parts = rest.split(":")
    if not head or len(parts) != 3 or parts[2] not in FORMATS:
        raise SystemExit(f"error: --col {spec!r}: expected HEADER=SOURCE:PATH:FORMAT with FORMAT in {sorted(FORMATS)}")
    return head, parts[0], parts[1], parts[2]


def build(title: str, cols: list[tuple[str, str, str, str]], rows: list[list[str]]) -> str:
    cache: dict[str, Any] = {}
    lines = [title, "", "| Method | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for row in rows:
        label, items = row[0], row[1:]
        if label.endswith(":") and not items:
            lines.append(f"| **{label}** |" + " |" * len(cols))
            continue
        files, var = {}, {}
        for it in items:
            k, sep, v = it.partition("=")
            if not sep:
                raise SystemExit(f"error: --row {label}: expected SOURCE=FILE or @VAR=VALUE, got {it!r}")
            (var if k.startswith("@") else files)[k.lstrip("@")] = v
        cells = [label]
        for _, src, path, kind in cols:
            if src not in files:
                cells.append(UNDEFINED)
                continue
            f = files[src]
            if f not in cache:
                if not Path(f).is_file():
                    print(f"error: row {label!r}: {src} file {f} does not exist (run the earlier steps first)", file=sys.stderr)
                    raise SystemExit(2)
                cache[f] = json.loads(Path(f).read_text())
            v = lookup(cache[f], path.format(**var))
            cells.append(UNDEFINED if v is None else fmt(kind, float(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--title", required=True)
    p.add_argument("--col", action="append", required=True, type=parse_col, help="HEADER=SOURCE:PATH:FORMAT")
    p.add_argument("--row", action="append", nargs="+", required=True, metavar="LABEL [SOURCE=FILE|@VAR=VALUE ...]")
    p.add_argument("--out", help="write (or with --append: add) the table here")
    p.add_argument("--append", action="store_true")
    a = p.parse_args(argv)
    text = build(a.title, a.col, a.row)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        old = out.read_text() + "\n" if a.append and out.is_file() else ""
        tmp = out.with_suffix(".tmp")
        tmp.write_text(old + text)
        tmp.replace(out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
