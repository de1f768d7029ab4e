#!/usr/bin/env bash
# [BE] Tables 1, 2 end to end: bash scripts/batchensemble_distill/run_all.sh [--smoke]
# With --smoke the steps queue their endist-vision commands and the queue runs once at the end
# (one Python process: torch is imported once), in the order the steps wrote it.
set -euo pipefail
d="$(dirname "$0")"
source "$d/../lib/recipe_common.sh"
if [[ "$SMOKE" == 1 ]]; then
  export VISION_DEFER=1 VISION_QUEUE="$OUT_DIR/.vision_queue"
  rm -f "$VISION_QUEUE"
fi
for s in 01_prepare 02_train_ensemble 03_distill 04_evaluate 05_table; do
  bash "$d/$s.sh" "$@"
done
if [[ "$SMOKE" == 1 ]]; then
  python "$d/../lib/vision_batch.py" "$VISION_QUEUE"
  rm -f "$VISION_QUEUE"
fi
