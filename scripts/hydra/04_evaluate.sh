#!/usr/bin/env bash
# Step 4: ACC/NLL/Brier (Tables 2-3), model uncertainty and its gap to the ensemble (Table 1, in eval.md).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r table name cfg sub ood <<<"$s"
  need_data "$sub"
  read -r -a oods <<<"$ood"
  step "$table ($name): evaluate (OOD: $ood)"
  vision evaluate --run "$(run_dir "$name" ensemble)" --ood "${oods[@]}"
  for st in "${STUDENTS[@]}"; do vision evaluate --run "$(run_dir "$name" "${st#*|}")" --ood "${oods[@]}"; done
done
vision_flush
