#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 5: print our Tables 1-2 in the paper's layout -> $OUT_DIR/imagenet/tables.md
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_imagenet_common.sh"
step "Tables 1-2 -> $IM_OUT/tables.md"
sets=()
for s in "${SHIFTS[@]}"; do sets+=(--set "$s"); done
python "$HERE/_imagenet_table.py" --out "$IM_OUT/tables.md" "${sets[@]}" \
  --model Single="$IM_OUT/ensemble/eval_single" --model Ensemble="$IM_OUT/ensemble/eval" \
  --model EnD="$IM_OUT/end/eval" --model EnD2="$IM_OUT/proxy_end2/eval"
