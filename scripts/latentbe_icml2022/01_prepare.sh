#!/usr/bin/env bash
# Step 1: check the data layout under DATA_DIR (see README.md); smoke mode uses embedded digits.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
step "prepare: data"
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub members sizes <<<"$s"
  [[ "$SMOKE" == 1 ]] && { echo "smoke: $name uses embedded digits"; continue; }
  require_data "$sub"
  echo "$name: $DATA_DIR/$sub"
done
require_data "svhn"   # OOD set of [LatentBE] Figs. 5-6 (test_32x32.mat)
