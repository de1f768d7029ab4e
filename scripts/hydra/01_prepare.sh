#!/usr/bin/env bash
# Step 1: check the data layout under DATA_DIR (see README.md). Table 2 uses embedded digits (no MNIST loader).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
step "prepare: data"
rm -f "$VISION_QUEUE"   # smoke: a queue left by an interrupted run
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r table name cfg sub ood <<<"$s"
  if [[ "$SMOKE" == 1 || "$sub" == - ]]; then echo "$table ($name): embedded digits"; continue; fi
  require_data "$sub"
  echo "$table ($name): $DATA_DIR/$sub"
done
if [[ "$SMOKE" != 1 ]] && printf '%s\n' "${SETTINGS[@]}" | grep -q '^table3|'; then
  require_data svhn   # Table 1 / Fig. 3 OOD set: SVHN test_32x32.mat
fi
