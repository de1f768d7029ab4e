#!/usr/bin/env bash
# Step 2: the deep-ensemble teachers (DE-M, independent seeds/shuffles), one per setting.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub members sizes <<<"$s"
  require_data "$sub"
  step "$name: DE-$members teacher"
  vision train --config "$cfg" --out "$(run_dir "$name" ensemble)" method_args.members="$members" $(data_args "$sub") "${EXTRA[@]}"
done
vision_flush
