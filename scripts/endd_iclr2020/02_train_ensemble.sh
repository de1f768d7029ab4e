#!/usr/bin/env bash
# Step 2: the deep-ensemble teachers: 100 spiral MLPs (Table 1-2) and MEMBERS VGG-16 per image data set.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
step "spirals: ensemble of $SP_FULL"
vision train --config spirals_ensemble --out "$(run_dir spirals ensemble)" method_args.members="$SP_FULL" "${SP_EXTRA[@]}"
for s in "${IMG_SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub aux ood <<<"$s"
  require_data "$sub"
  step "$name: ensemble of $MEMBERS"
  # shellcheck disable=SC2046
  vision train --config "${cfg}_ensemble" --out "$(run_dir "$name" ensemble)" method_args.members="$MEMBERS" \
    $(data_args "$sub") "${IMG_EXTRA[@]}"
done
vision_flush
