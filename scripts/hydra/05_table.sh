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

# The paper's layout (rows = models): ACC, NLL, Brier (ours: lower is better; the paper prints BS as a negative
# score) and MU = mean mutual information on the test set (null in eval.json, printed "–", for the single-output KD student)
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r table name cfg sub ood <<<"$s"
  rows=(--row "Ensemble (M = $MEMBERS)" "eval=$(run_dir "$name" ensemble)/eval/eval.json")
  for st in "${STUDENTS[@]}"; do rows+=(--row "${st%%|*}" "eval=$(run_dir "$name" "${st#*|}")/eval/eval.json"); done
  step "[Hydra] $table ($name), paper layout"
  python "$(dirname "$0")/../lib/eval_table.py" --title "[Hydra] Table ${table#table}: $name" \
    --col "ACC=eval:test/accuracy:f4" --col "NLL=eval:test/nll:f4" --col "Brier=eval:test/brier:f4" \
    --col "MU=eval:test/mean_uncertainty/mutual_information:f4" "${rows[@]}" --out "$OUT_DIR/tables/${table}_$name/paper.md"
done
