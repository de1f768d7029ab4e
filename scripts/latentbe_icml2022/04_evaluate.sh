#!/usr/bin/env bash
# Step 4: accuracy, NLL, ECE, calibrated NLL/ECE (cNLL/cECE), OOD (SVHN) for teachers and students.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
ood=()
[[ "$SMOKE" == 1 ]] || ood=(--ood "svhn=$DATA_DIR/svhn")
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub members sizes <<<"$s"
  require_data "$sub"
  ens="$(run_dir "$name" ensemble)"
  step "$name: evaluate"
  vision evaluate --run "$ens" --members 1 --out "$ens/eval_base" "${ood[@]}"          # Base (w/o distillation)
  vision evaluate --run "$(run_dir "$name" single_kd)" "${ood[@]}"
  for m in $sizes; do
    vision evaluate --run "$ens" --members "$m" --out "$ens/eval_de$m" "${ood[@]}"   # DE-M teacher
    for st in "${STUDENTS[@]}"; do
      vision evaluate --run "$(run_dir "$name" "de$m/$(slug "${st%%|*}")")" "${ood[@]}"
    done
  done
done
vision_flush
