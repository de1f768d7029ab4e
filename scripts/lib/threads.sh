# shellcheck shell=bash
# Sourced by scripts that run several torch / fairseq / endist-vision processes at once.
#   threads_per_job JOBS   exports OMP_NUM_THREADS and MKL_NUM_THREADS = max(1, nproc / JOBS), or the
#                          OMP_NUM_THREADS already exported if that is smaller (a user's or the tests' cap wins),
#                          so that JOBS parallel jobs share the cores instead of each starting nproc threads.
# Call it in the subshell of each parallel job (`( threads_per_job 2; cmd ) &`) or in a script whose
# commands all run in parallel; a serial step after them keeps the full thread count.
threads_per_job() {
  local jobs="${1:-}" cores n
  if [[ ! "$jobs" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: threads_per_job: JOBS must be a positive integer, got '${jobs}'" >&2
    return 2
  fi
  # GNU nproc itself answers OMP_NUM_THREADS / OMP_THREAD_LIMIT when they are set: count the cores without them
  cores="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
  n=$(( cores / jobs ))
  (( n >= 1 )) || n=1
  if [[ "${OMP_NUM_THREADS:-}" =~ ^[1-9][0-9]*$ ]] && (( OMP_NUM_THREADS < n )); then
    n="$OMP_NUM_THREADS"
  fi
  export OMP_NUM_THREADS="$n" MKL_NUM_THREADS="$n"
}
