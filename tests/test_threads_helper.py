"""``scripts/lib/threads.sh``: ``threads_per_job JOBS`` gives each of JOBS parallel jobs nproc/JOBS threads (issue 16)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELPER = REPO / "scripts" / "lib" / "threads.sh"
CORES = len(os.sched_getaffinity(0))  # what `nproc` counts


def _threads(jobs: str, omp: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    script = f'source "{HELPER}"; threads_per_job {jobs} || exit $?; bash -c \'echo "$OMP_NUM_THREADS $MKL_NUM_THREADS"\''
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("jobs", [1, 2, 3, CORES, CORES + 1, 4 * CORES + 3])
def test_threads_per_job_splits_the_cores(jobs: int) -> None:
    proc = _threads(str(jobs))
    assert proc.returncode == 0, proc.stderr
    expected = max(1, CORES // jobs)
    assert proc.stdout.split() == [str(expected), str(expected)]  # exported to child processes, OMP and MKL alike


def test_a_smaller_existing_cap_wins_a_larger_one_does_not() -> None:
    assert _threads("1", omp="1").stdout.split() == ["1", "1"]
    big = str(10 * CORES)
    assert _threads("1", omp=big).stdout.split() == [str(CORES), str(CORES)]


@pytest.mark.parametrize("bad", ["0", "-1", "two", "''"])
def test_bad_jobs_is_one_clear_error(bad: str) -> None:
    proc = _threads(bad)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: threads_per_job: JOBS must be a positive integer")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_parallel_jobs_in_subshells_do_not_change_the_serial_step_after_them() -> None:
    """The pattern of scripts/seq/toy_pipeline.sh: `( threads_per_job 2 && job ) &` then a serial step."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    script = (f'source "{HELPER}"; for i in 1 2; do ( threads_per_job 2 && echo "job $OMP_NUM_THREADS" ) & done; wait; '
              'echo "serial ${OMP_NUM_THREADS:-unset}"')
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    lines = sorted(proc.stdout.split("\n")[:-1])
    assert lines == [f"job {max(1, CORES // 2)}"] * 2 + ["serial unset"]


@pytest.mark.parametrize("script", ["scripts/seq/toy_pipeline.sh", "scripts/proxy_neurips2021/21_wmt_teachers.sh",
                                    "scripts/proxy_neurips2021/22_wmt_distill.sh"])
def test_scripts_that_start_parallel_jobs_split_the_threads(script: str) -> None:
    text = (REPO / script).read_text()
    assert "threads_per_job" in text and text.index("threads_per_job") < text.index("& pids+=" if "& pids+=" in text else ") &")
