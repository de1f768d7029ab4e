#!/usr/bin/env bash
# Step 4: error, PRR, ECE, NLL (Table 3 / Table 1-2), OOD % ROC-AUC with total and knowledge
# uncertainty (Table 4); Individual = the first ensemble member, Ensemble = all MEMBERS (or m of them).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
sp_ens="$(run_dir spirals ensemble)"
step "spirals: evaluate"
vision evaluate --run "$sp_ens" --members 1 --out "$sp_ens/eval_ind"
for m in $SP_SIZES; do
  vision evaluate --run "$sp_ens" --members "$m" --out "$sp_ens/eval_m$m"
  for meth in end end2; do vision evaluate --run "$(run_dir spirals "m$m/$meth")"; done
done
for meth in end end2; do vision evaluate --run "$(run_dir spirals "m$SP_FULL/${meth}_aux")"; done
for s in "${IMG_SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub aux ood <<<"$s"
  require_data "$sub"
  read -r -a oods <<<"$ood"
  ens="$(run_dir "$name" ensemble)"
  step "$name: evaluate (OOD: $ood)"
  vision evaluate --run "$ens" --members 1 --out "$ens/eval_ind" --ood "${oods[@]}"
  vision evaluate --run "$ens" --ood "${oods[@]}"
  for r in end end2 end_aux end2_aux; do vision evaluate --run "$(run_dir "$name" "$r")" --ood "${oods[@]}"; done
  in_list "$name" "$ABL_SETTINGS" || continue
  for m in $ABL_SIZES; do
    [[ "$m" == "$MEMBERS" ]] && continue
    vision evaluate --run "$ens" --members "$m" --out "$ens/eval_m$m" --ood "${oods[@]}"
    vision evaluate --run "$(run_dir "$name" "ablation/m$m")" --ood "${oods[@]}"
  done
  for t in $ABL_TEMPS; do
    [[ "$t" == 10 ]] && continue
    vision evaluate --run "$(run_dir "$name" "ablation/t$t")" --ood "${oods[@]}"
  done
done
vision_flush
