#!/usr/bin/env bash
# [Hydra] Tables 2 and 3 end to end: bash scripts/hydra/run_all.sh [--smoke]
set -euo pipefail
d="$(dirname "$0")"
for s in 01_prepare 02_train_ensemble 03_distill 04_evaluate; do
  VISION_DEFER=1 bash "$d/$s.sh" "$@"   # smoke mode: commands queued, run by 05_table in one process
done
bash "$d/05_table.sh" "$@"
