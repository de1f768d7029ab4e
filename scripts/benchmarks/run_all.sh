#!/usr/bin/env bash
# `make bench`: the benchmarks that need no prepared data (ratios measured in one run).
# generate_overhead.py needs trained checkpoints: see its --help (e.g. after scripts/seq/toy_pipeline.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python "$here/proxy_loss_speed.py" "$@"
python "$here/vision_inference.py"
