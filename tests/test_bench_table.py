"""``scripts/benchmarks/bench_rows.py`` / ``bench_table.py``: the rows every benchmark writes and make bench's one table."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "benchmarks"))

import bench_table  # noqa: E402
from bench_rows import row, write_rows  # noqa: E402


@pytest.mark.parametrize("median,target,expected", [
    (2.99, "<= 3", "PASS"), (3.0, "<= 3", "PASS"), (3.01, "<= 3", "FAIL"), (3.0, "< 3", "FAIL"),
    (1.5, ">= 1.5", "PASS"), (1.49, "≥ 1.5", "FAIL"), (0.4, "≤0.5", "PASS"), (7.0, "", "–"), (None, "<= 2", "not measured"),
])
def test_verdict(median: float | None, target: str, expected: str) -> None:
    assert bench_table.verdict(median, target) == expected


def test_unparsable_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="at most 3"):
        bench_table.verdict(1.0, "at most 3")


def test_rows_round_trip_and_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = [3.4, 2.1, 2.8, 5.0, 2.6]
    path = tmp_path / "sub" / "rows.json"
    write_rows(path, [row("loss ratio", values, "<= 3"), row("memory", [1.9], "<= 2")])
    data = json.loads(path.read_text())
    assert data["rows"][0] == {"name": "loss ratio", "median": statistics.median(values), "min": 2.1, "max": 5.0,
                               "target": "<= 3"}
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    rc = bench_table.main(["--rows", str(path), "--missing", "GPU ratio|<= 2|no CUDA device"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(lines) == 5
    assert lines[2] == "| loss ratio | 2.8 | 2.1–5 | <= 3 | PASS |"
    assert lines[3] == "| memory | 1.9 | 1.9–1.9 | <= 2 | PASS |"
    assert lines[4] == "| GPU ratio | – | – | <= 2 | not measured (no CUDA device) |"


def test_a_failed_benchmark_is_an_error_row_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": [{"median": 1}]}')
    rc = bench_table.main(["--rows", str(tmp_path / "absent.json"), "--rows", str(bad)])
    out = capsys.readouterr().out
    assert rc == 1 and "| absent | – | – | – | ERROR (" in out and "| bad | – | – | – | ERROR (" in out
