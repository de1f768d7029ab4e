#!/usr/bin/env bash
# `make bench`: every benchmark, then ONE table of every ratio with its target (issues 15, 16) and PASS/FAIL.
#   BENCH_SMOKE=1     tiny sizes, 2 rounds (the test suite runs `make bench` like this; the numbers mean nothing)
#   BENCH_THREADS=N   torch/OpenMP threads of every benchmark (default 1; printed)
#   BENCH_OUT=DIR     where each script's --json rows go (default bench_output/bench; emptied first, so no
#                     row is ever copied from an older run)
#   BENCH_TOY=DIR     toy fairseq teachers for generate_overhead.py (default bench_output/toy); measured only
#                     when DIR/teachers exist or BENCH_GENERATE=1 (then scripts/seq/toy_pipeline.sh builds them)
# A benchmark plugs in with one `bench NAME SCRIPT ARGS...` line: SCRIPT gets `--json $BENCH_OUT/NAME.json`
# and writes {"rows": [{"name", "median", "min", "max", "target"}]} (scripts/benchmarks/bench_rows.py);
# a SCRIPT not in this checkout is skipped with a note, a SCRIPT that fails gives an ERROR row and exit 1.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
threads="${BENCH_THREADS:-1}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
out="${BENCH_OUT:-bench_output/bench}"
smoke="${BENCH_SMOKE:-0}"
mkdir -p "$out" && rm -f "$out"/*.json
table_args=()
status=0

bench() {  # bench NAME SCRIPT [ARGS...]
  local name="$1" script="$here/$2"
  shift 2
  if [[ ! -f "$script" ]]; then
    echo "note: $(basename "$script") is not in this checkout: its rows are skipped"
    table_args+=(--missing "$(basename "$script")||script not in this checkout")
    return 0
  fi
  echo "== $(basename "$script") $*"
  python "$script" "$@" --json "$out/$name.json" || { echo "error: $(basename "$script") failed" >&2; status=1; }
  table_args+=(--rows "$out/$name.json")
}

if python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then cuda=1; else cuda=0; fi
echo "make bench: $threads torch/OpenMP thread(s) per benchmark, CUDA $([[ $cuda == 1 ]] && echo yes || echo no), smoke=$smoke"

if [[ "$smoke" == 1 ]]; then
  bench proxy_cpu proxy_loss_speed.py --n 64 --v 2000 --repeats 2 --inner 1 --threads "$threads"
  bench malloc malloc_speed.py --smoke --repeats 1 --threads "$threads"
  bench vision_speed vision_speed.py --models resnet20 --batch-size 8 --ensemble-batch-size 4 --image-size 16 --ensemble-members 2 --repeats 1 --threads "$threads"
  bench startup startup_time.py --what help --repeats 2
  bench cache_speed teacher_cache_speed.py --v 500 --sentences 4 --length 6 --dim 32 --layers 1 --ms 2 --topk 8 --repeats 2 --threads "$threads"
else
  bench proxy_cpu proxy_loss_speed.py --variants cross_entropy,proxy_reverse --threads "$threads"
  bench malloc malloc_speed.py --threads "$threads"
  bench vision_speed vision_speed.py --threads "$threads"
  bench startup startup_time.py
  bench cache_speed teacher_cache_speed.py --threads "$threads"
fi
if [[ $cuda == 1 ]]; then
  [[ "$smoke" == 1 ]] && sizes=(--n 64 --v 2000 --repeats 2 --inner 1) || sizes=()
  bench proxy_gpu proxy_loss_speed.py --device cuda "${sizes[@]}"
else
  table_args+=(--missing "Proxy reverse-KL fwd+bwd / label-smoothed CE, GPU|<= 2|no CUDA device on this machine")
  table_args+=(--missing "Proxy reverse-KL peak extra memory, GPU ([N,V] tensors)|<= 2|no CUDA device on this machine")
fi
toy="${BENCH_TOY:-bench_output/toy}"
if [[ "$smoke" != 1 && ( -f "$toy/teachers/teacher2/checkpoint_last.pt" || "${BENCH_GENERATE:-0}" == 1 ) ]]; then
  bench generate generate_overhead.py --toy-dir "$toy" --threads "$threads" --ep-share
  # the same with a 3-layer, 256-dim pair (trained once into $toy/teachers_l3_d256): a model whose search is not
  # dominated by per-operation overhead as the toy's (V = 56, 200 five-token sentences in ~0.13 CPU s) is
  bench generate_l3 generate_overhead.py --toy-dir "$toy" --toy-layers 3 --toy-dim 256 --repeats 5 --threads "$threads" --ep-share
else
  table_args+=(--missing "fairseq-generate --compute-uncertainty time overhead, CPU|<= 1.1|needs toy teachers in $toy (BENCH_GENERATE=1 builds them)")
fi

# images/s of every multi-member model (its own table; no target rows)
if [[ "$smoke" == 1 ]]; then
  python "$here/vision_inference.py" --iters 2 --repeats 1 --threads "$threads" || status=1
else
  python "$here/vision_inference.py" --threads "$threads" || status=1
fi

echo
echo "## make bench: every ratio with its target ($(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo 'no git'), $threads thread(s))"
echo
python "$here/bench_table.py" "${table_args[@]}" || status=1
exit $status
