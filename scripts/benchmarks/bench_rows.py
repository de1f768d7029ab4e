"""The row format every benchmark's ``--json OUT`` writes, and the summary of repeated ratios.

``{"rows": [{"name": str, "median": float | None, "min": float | None, "max": float | None,
"target": str, "note": str (optional)}]}`` — one row per measured ratio. ``target`` is a comparison
such as ``"<= 3"`` or ``">= 1.5"`` (``scripts/benchmarks/bench_table.py`` decides PASS/FAIL from the
median), or ``""`` for a number shown without a verdict; ``median`` is ``None`` for a row that was not
measured (``note`` says why, e.g. no CUDA device).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence


def summary(values: Sequence[float]) -> Dict[str, float]:
    """Median, min and max of repeated measurements of one ratio."""
    if not values:
        raise ValueError("no measurements")
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def row(name: str, values: Optional[Sequence[float]], target: str = "", note: str = "") -> Dict[str, object]:
    """One table row; ``values=None`` is a row that was not measured (``note`` says why)."""
    stats: Dict[str, object] = dict(summary(values)) if values else {"median": None, "min": None, "max": None}
    out: Dict[str, object] = {"name": name, **stats, "target": target}
    if note:
        out["note"] = note
    return out


def write_rows(path: str | Path, rows: List[Dict[str, object]]) -> None:
    """Write ``{"rows": rows}`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"rows": rows}, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
