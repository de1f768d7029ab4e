#!/usr/bin/env bash
# Step 4: accuracy, ECE, NLL (and calibrated NLL/ECE, Brier, PRR) for the teacher and the students.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
ood=()   # [BE] reports no OOD set; add e.g. ood=(--ood "svhn=$DATA_DIR/svhn")
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub members sizes <<<"$s"
  require_data "$sub"
  ens="$(run_dir "$name" ensemble)"
  step "$name: evaluate"
  for m in $sizes; do
    vision evaluate --run "$ens" --members "$m" --out "$ens/eval_de$m" ${ood[@]+"${ood[@]}"}   # DE-M teacher
    for st in "${STUDENTS[@]}"; do
      vision evaluate --run "$(run_dir "$name" "de$m/$(slug "${st%%|*}")")" ${ood[@]+"${ood[@]}"}
    done
  done
done
vision_flush
