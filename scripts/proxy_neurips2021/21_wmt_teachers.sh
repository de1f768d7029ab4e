#!/usr/bin/env bash
# [Proxy] Tables 3-4, step 2: train MEMBERS=10 transformer-big teachers (seeds 1..MEMBERS). Smoke: 2 tiny teachers, 40 updates, in parallel.
source "$(dirname "$0")/../lib/recipe_common.sh"
require_data wmt17_en_de
source "$(dirname "$0")/_wmt_common.sh"
pids=()
[[ "$SMOKE" == 1 ]] && threads_per_job "$MEMBERS"  # smoke: the jobs below run at once
for ((i = 1; i <= MEMBERS; i++)); do
  step "teacher $i/$MEMBERS -> $WMT_OUT/teachers/t$i"
  if [[ "$SMOKE" == 1 ]]; then
    fsq_train "$WMT_OUT/teachers/t$i" "${TEACHER_ARGS[@]}" --seed "$i" & pids+=($!)
  else
    fsq_train "$WMT_OUT/teachers/t$i" "${TEACHER_ARGS[@]}" --seed "$i"
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
