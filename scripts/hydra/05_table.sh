#!/usr/bin/env bash
# Step 5: one table per setting, columns in the row order of [Hydra] Tables 2/3 (Ensemble, Prior Networks,
# Knowledge distillation, Hydra), written to OUT_DIR/tables/<table>_<name>/tables.md and printed.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r table name cfg sub ood <<<"$s"
  cols=("Ensemble (M: $MEMBERS)=$(run_dir "$name" ensemble)/eval")
  for st in "${STUDENTS[@]}"; do cols+=("${st%%|*}=$(run_dir "$name" "${st#*|}")/eval"); done
  step "[Hydra] $table: $name"
  vision compare "${cols[@]}" --title "[Hydra] Table ${table#table}: $name" --out "$OUT_DIR/tables/${table}_$name"
done
vision_flush
