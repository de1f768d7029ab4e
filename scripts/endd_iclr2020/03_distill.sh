#!/usr/bin/env bash
# Step 3: EnD (T = 2.5) and EnD2 (T0 = 10 annealed) students, with and without AUX transfer data;
# App. D ablations: EnD2+AUX for ensemble sizes ABL_SIZES and initial temperatures ABL_TEMPS.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
sp_ens="$(run_dir spirals ensemble)"
for m in $SP_SIZES; do
  step "spirals: EnD / EnD2 from $m members"
  for meth in end end2; do
    vision train --config "spirals_$meth" --out "$(run_dir spirals "m$m/$meth")" distill.teacher="$sp_ens" distill.teacher_members="$m" "${SP_EXTRA[@]}"
  done
done
step "spirals: EnD+AUX / EnD2+AUX from $SP_FULL members (Table 2)"
for meth in end end2; do
  vision train --config "spirals_$meth" --out "$(run_dir spirals "m$SP_FULL/${meth}_aux")" distill.teacher="$sp_ens" \
    distill.teacher_members="$SP_FULL" data.aux=spirals_ring "${SP_EXTRA[@]}"
done
for s in "${IMG_SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub aux ood <<<"$s"
  require_data "$sub"
  ens="$(run_dir "$name" ensemble)"
  for meth in end end2; do
    step "$name: $meth, $meth+AUX"
    # shellcheck disable=SC2046
    vision train --config "${cfg}_$meth" --out "$(run_dir "$name" "$meth")" distill.teacher="$ens" $(data_args "$sub") "${IMG_EXTRA[@]}"
    # shellcheck disable=SC2046
    vision train --config "${cfg}_$meth" --out "$(run_dir "$name" "${meth}_aux")" distill.teacher="$ens" "data.aux=$aux" \
      $(data_args "$sub") "${IMG_EXTRA[@]}"
  done
  in_list "$name" "$ABL_SETTINGS" || continue
  for m in $ABL_SIZES; do
    [[ "$m" == "$MEMBERS" ]] && continue   # = the end2_aux run above
    step "$name: App. D, EnD2+AUX from $m members"
    # shellcheck disable=SC2046
    vision train --config "${cfg}_end2" --out "$(run_dir "$name" "ablation/m$m")" distill.teacher="$ens" distill.teacher_members="$m" \
      "data.aux=$aux" $(data_args "$sub") "${IMG_EXTRA[@]}"
  done
  for t in $ABL_TEMPS; do
    [[ "$t" == 10 ]] && continue           # = the end2_aux run above (T0 = 10)
    step "$name: App. D, EnD2+AUX with T0 = $t"
    # shellcheck disable=SC2046
    vision train --config "${cfg}_end2" --out "$(run_dir "$name" "ablation/t$t")" distill.teacher="$ens" \
      method_args.initial_temperature="$t" "data.aux=$aux" $(data_args "$sub") "${IMG_EXTRA[@]}"
  done
done
vision_flush
