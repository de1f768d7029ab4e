"""``scripts/benchmarks/teacher_cache_error.py --fairseq-data``: the cache's error measured on the toy corpus' own
teachers (issue 15). The k = V rows show the exactness ``shared.teacher_cache`` promises on real distributions."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "benchmarks"))

import teacher_cache_error  # noqa: E402


def test_error_benchmark_on_real_teachers(tmp_path, toy_data_bin, teacher_checkpoints, capsys):
    out = tmp_path / "rows.json"
    argv = ["--fairseq-data", str(toy_data_bin), "--ensemble-paths", ",".join(map(str, teacher_checkpoints)),
            "--n", "8", "--ks", "4", "--temps", "1", "--json", str(out)]
    assert teacher_cache_error.main(argv) == 0
    text = capsys.readouterr().out
    assert f"M={len(teacher_checkpoints)}" in text and "(valid, 8 sentences," in text
    rows = {r["name"]: r["median"] for r in json.loads(out.read_text())["rows"]}
    assert len(rows) == 2 * 1 * 4 * 2  # k ∈ {4, V}, T = 1, 4 criteria, loss and grad
    for crit in ("end", "proxy_reverse", "proxy_forward"):
        assert rows[f"teacher cache rel. grad error {crit} k=V T=1 (fp32)"] < 1e-5
        assert rows[f"teacher cache rel. grad error {crit} k=4 T=1 (fp32)"] > 1e-7  # 4 of the toy's classes: not exact
