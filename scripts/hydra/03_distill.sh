#!/usr/bin/env bash
# Step 3: Prior Network (EnD2), knowledge distillation (EnD) and Hydra students of every ensemble.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r table name cfg sub ood <<<"$s"
  need_data "$sub"
  mapfile -t ex < <(extra "$table")
  for st in "${STUDENTS[@]}"; do
    label="${st%%|*}"; meth="${st#*|}"
    step "$table ($name): $label"
    # shellcheck disable=SC2046
    vision train --config "${cfg}_$meth" --out "$(run_dir "$name" "$meth")" distill.teacher="$(run_dir "$name" ensemble)" \
      $(data_args "$sub") "${ex[@]}"
  done
done
vision_flush
