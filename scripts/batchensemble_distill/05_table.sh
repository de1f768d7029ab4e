#!/usr/bin/env bash
# Step 5: one table per setting and teacher size, columns in the order of [BE] Tables 1/2,
# written to OUT_DIR/tables/<setting>_de<M>/tables.md and printed.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub members sizes <<<"$s"
  ens="$(run_dir "$name" ensemble)"
  for m in $sizes; do
    cols=("DE-TEACHER=$ens/eval_de$m")
    for st in "${STUDENTS[@]}"; do
      label="${st%%|*}"; cols+=("$label=$(run_dir "$name" "de$m/$(slug "$label")")/eval")
    done
    step "table: $name, students of DE-$m"
    vision compare "${cols[@]}" --title "[BE] $name, DE-$m teacher" --out "$OUT_DIR/tables/${name}_de$m"
  done
done
vision_flush
