#!/usr/bin/env bash
# Step 3: every student of the tables, for every teacher size (distill.teacher_members = the first M members).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub members sizes <<<"$s"
  require_data "$sub"
  teacher="$(run_dir "$name" ensemble)"
  for m in $sizes; do
    for st in "${STUDENTS[@]}"; do
      label="${st%%|*}"; over="${st#*|}"
      step "$name: DE-$m → $label"
      # shellcheck disable=SC2086
      vision train --config "$cfg" --out "$(run_dir "$name" "de$m/$(slug "$label")")" $over method_args.members=null \
        distill.teacher="$teacher" distill.teacher_members="$m" $(data_args "$sub") "${EXTRA[@]}"
    done
  done
done
vision_flush
