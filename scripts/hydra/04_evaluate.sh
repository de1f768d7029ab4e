#!/usr/bin/env bash
# Step 4: ACC/NLL/Brier (Tables 2-3), model uncertainty and its gap to the ensemble (Table 1, in eval.md).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
evaluate() {
  local st oods=() o
  [[ "$ood" == - ]] || { read -r -a o <<<"$ood"; oods=(--ood "${o[@]}"); }
  step "$table ($name): evaluate (OOD: $ood)"
  vision evaluate --run "$(run_dir "$name" ensemble)" ${oods[@]+"${oods[@]}"}
  for st in "${STUDENTS[@]}"; do vision evaluate --run "$(run_dir "$name" "${st#*|}")" ${oods[@]+"${oods[@]}"}; done
}
each_setting evaluate
