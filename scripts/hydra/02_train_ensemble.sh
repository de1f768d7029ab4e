#!/usr/bin/env bash
# Step 2: the teacher ensembles (MEMBERS models, independent seeds and shuffles).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r table name cfg sub ood <<<"$s"
  need_data "$sub"
  mapfile -t ex < <(extra "$table")
  step "$table ($name): ensemble of $MEMBERS"
  # shellcheck disable=SC2046
  vision train --config "${cfg}_ensemble" --out "$(run_dir "$name" ensemble)" method_args.members="$MEMBERS" $(data_args "$sub") "${ex[@]}"
done
vision_flush
