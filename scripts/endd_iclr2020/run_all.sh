#!/usr/bin/env bash
# [EnD2] Tables 1-4 and App. D ablations end to end: bash scripts/endd_iclr2020/run_all.sh [--smoke]
set -euo pipefail
d="$(dirname "$0")"
for s in 01_prepare 02_train_ensemble 03_distill 04_evaluate; do
  VISION_DEFER=1 bash "$d/$s.sh" "$@"   # smoke mode: commands queued, run by 05_table in one process
done
bash "$d/05_table.sh" "$@"
