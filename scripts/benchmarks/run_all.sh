#!/usr/bin/env bash
# `make bench`: the benchmarks that need no prepared data (ratios measured in one run).
# generate_overhead.py needs trained checkpoints: see its --help (e.g. after scripts/seq/toy_pipeline.sh).
#   BENCH_SMOKE=1   tiny sizes, one repeat (the test suite runs `make bench` like this; the numbers mean nothing)
#   extra arguments go to proxy_loss_speed.py (e.g. --device cuda)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [[ "${BENCH_SMOKE:-0}" == 1 ]]; then
  python "$here/proxy_loss_speed.py" --n 64 --v 2000 --repeats 1 "$@"
  python "$here/vision_inference.py" --iters 2 --repeats 1
else
  python "$here/proxy_loss_speed.py" "$@"
  python "$here/vision_inference.py"
fi
