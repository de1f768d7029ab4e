#!/usr/bin/env bash
# [Proxy] Tables 3-4, step 3: distil the teachers with EnD (forward KL to the mean) and EnD2 (reverse KL to the
# Proxy-Dirichlet target, offsets 1): --max-tokens 1024 --update-freq 32 --max-update 20000. Smoke: 40 updates, in parallel.
source "$(dirname "$0")/../lib/recipe_common.sh"
require_data wmt17_en_de
source "$(dirname "$0")/_wmt_common.sh"
TEACHERS=$(teacher_paths ,)
pids=()
[[ "$SMOKE" == 1 ]] && threads_per_job 2  # smoke: the jobs below run at once
for c in end:forward_kl_mean_distillation end2:rkl_dirichlet_proxy_distillation; do
  name=${c%%:*}; crit=${c#*:}
  step "$name student ($crit) -> $WMT_OUT/students/$name"
  args=("${STUDENT_ARGS[@]}" --task ensemble_distillation --ensemble-paths "$TEACHERS" --criterion "$crit"
        --init-temp 1 --final-temp 1 --seed 100)
  if [[ "$SMOKE" == 1 ]]; then
    fsq_train "$WMT_OUT/students/$name" "${args[@]}" & pids+=($!)
  else
    fsq_train "$WMT_OUT/students/$name" "${args[@]}"
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
