"""``scripts/benchmarks/teacher_cache_error.py`` on a tiny batch: it runs, writes its rows, and its k = V rows show
the exactness that ``shared.teacher_cache`` promises (so the benchmark measures the cache, not itself)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "benchmarks"))

import teacher_cache_error  # noqa: E402


def test_error_benchmark_rows(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert teacher_cache_error.main(["--n", "3", "--v", "300", "--m", "3", "--ks", "16", "--temps", "1,2", "--json", str(out)]) == 0
    rows = {r["name"]: r["median"] for r in json.loads(out.read_text())["rows"]}
    assert len(rows) == 2 * 2 * 4 * 2  # k ∈ {16, V}, T ∈ {1, 2}, 4 criteria, loss and grad
    for crit in ("end", "proxy_reverse", "proxy_forward"):  # exact at k = V, T = 1 (float32 members)
        assert rows[f"teacher cache rel. grad error {crit} k=V T=1 (fp32)"] < 1e-5
    assert rows["teacher cache rel. grad error end2 k=V T=2 (fp32)"] < 1e-5  # EnD²: exact on the grid
    assert rows["teacher cache rel. grad error end k=16 T=1 (fp32)"] > 1e-6  # k < V merges the tail: not exact
    assert "| 300 |" in capsys.readouterr().out
