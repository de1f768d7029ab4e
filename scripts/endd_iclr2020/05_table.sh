#!/usr/bin/env bash
# Step 5: the tables in the layout of [EnD2] Tables 1-4 (columns = models, as in the paper), written to
# OUT_DIR/tables/<name>/tables.md and printed; Fig. 3 (uncertainty maps) as tables/table2_spirals/uncertainty_maps.png.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
sp_ens="$(run_dir spirals ensemble)"
for m in $SP_SIZES; do
  cols=()
  [[ "$m" == "${SP_SIZES%% *}" ]] && cols+=("Individual=$sp_ens/eval_ind")
  cols+=("Ensemble=$sp_ens/eval_m$m" "EnD=$(run_dir spirals "m$m/end")/eval" "EnD2=$(run_dir spirals "m$m/end2")/eval")
  step "Table 1: spirals, $m models"
  vision compare "${cols[@]}" --title "[EnD2] Table 1: spirals, $m models" --out "$OUT_DIR/tables/table1_spirals_m$m"
done
step "Table 2: spirals, D_trn vs D_trn + D_AUX ($SP_FULL models) and Fig. 3"
vision compare "Individual=$sp_ens/eval_ind" "Ensemble=$sp_ens/eval_m$SP_FULL" \
  "EnD=$(run_dir spirals "m$SP_FULL/end")/eval" "EnD2=$(run_dir spirals "m$SP_FULL/end2")/eval" \
  "EnD+AUX=$(run_dir spirals "m$SP_FULL/end_aux")/eval" "EnD2+AUX=$(run_dir spirals "m$SP_FULL/end2_aux")/eval" \
  --title "[EnD2] Table 2: spirals, $SP_FULL models" --out "$OUT_DIR/tables/table2_spirals" --maps
for s in "${IMG_SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub aux ood <<<"$s"
  ens="$(run_dir "$name" ensemble)"
  step "Tables 3-4: $name"
  vision compare "IND=$ens/eval_ind" "ENSM=$ens/eval" "EnD=$(run_dir "$name" end)/eval" "EnD2=$(run_dir "$name" end2)/eval" \
    "EnD+AUX=$(run_dir "$name" end_aux)/eval" "EnD2+AUX=$(run_dir "$name" end2_aux)/eval" \
    --title "[EnD2] Tables 3-4: $name" --out "$OUT_DIR/tables/table34_$name"
  in_list "$name" "$ABL_SETTINGS" || continue
  cols=()
  for m in $ABL_SIZES; do
    if [[ "$m" == "$MEMBERS" ]]; then cols+=("Ensm-$m=$ens/eval" "EnD2+AUX-$m=$(run_dir "$name" end2_aux)/eval")
    else cols+=("Ensm-$m=$ens/eval_m$m" "EnD2+AUX-$m=$(run_dir "$name" "ablation/m$m")/eval"); fi
  done
  step "App. D: $name, ensemble size"
  vision compare "${cols[@]}" --title "[EnD2] App. D (Figs. 8-10): $name, ensemble size" --out "$OUT_DIR/tables/ablation_members_$name"
  cols=()
  for t in $ABL_TEMPS; do
    if [[ "$t" == 10 ]]; then cols+=("T0-$t=$(run_dir "$name" end2_aux)/eval")
    else cols+=("T0-$t=$(run_dir "$name" "ablation/t$t")/eval"); fi
  done
  step "App. D: $name, initial temperature"
  vision compare "${cols[@]}" --title "[EnD2] App. D (Figs. 11-13): $name, initial temperature (EnD2+AUX)" \
    --out "$OUT_DIR/tables/ablation_temperature_$name"
done
vision_flush
