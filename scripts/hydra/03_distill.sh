#!/usr/bin/env bash
# Step 3: Prior Network (EnD2), knowledge distillation (EnD) and Hydra students of every ensemble.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
distill() {
  local st
  for st in "${STUDENTS[@]}"; do
    step "$table ($name): ${st%%|*}"
    vision train --config "${cfg}_${st#*|}" --out "$(run_dir "$name" "${st#*|}")" distill.teacher="$(run_dir "$name" ensemble)" \
      "$(data_args "$sub")" ${ex[@]+"${ex[@]}"}
  done
}
each_setting distill
