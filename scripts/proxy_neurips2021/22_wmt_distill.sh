#!/usr/bin/env bash
# [Proxy] Tables 3-4, step 3: distil the teachers with EnD (forward KL to the mean) and EnD2 (reverse KL to the
# Proxy-Dirichlet target, offsets 1): --max-tokens 1024 --update-freq 32 --max-update 20000. Smoke: 40 updates, in parallel.
# The teachers run once, into a top-k teacher cache (endist-seq-cache, k = TOPK, default 64 (smoke 16), T = 1 only: neither
# student anneals), which both students read (--teacher-cache); TEACHER_MODE=online runs the teachers at every
# update instead (--ensemble-paths).
source "$(dirname "$0")/../lib/recipe_common.sh"
require_data wmt17_en_de
source "$(dirname "$0")/_wmt_common.sh"
TEACHERS=$(teacher_paths ,)
TEACHER_MODE="${TEACHER_MODE:-cache}"
[[ "$SMOKE" == 1 ]] && TOPK="${TOPK:-16}"  # the smoke corpus has 56 target types
CACHE="$WMT_OUT/teacher_cache"
case "$TEACHER_MODE" in
  cache)
    step "teacher cache (top-${TOPK:-64} of the ${MEMBERS} teachers' mean) -> $CACHE"
    build=(endist-seq-cache "$BIN" --user-dir endist_seq --ensemble-paths "$TEACHERS" --topk "${TOPK:-64}" --temperatures 1
           --subset train --out "$CACHE")
    if [[ "$SMOKE" == 1 ]]; then
      (cd "$ROOT" && "${build[@]}" --cpu --batch-size 64)
    else  # one process per GPU, each writing its shard; they meet in a barrier and rank 0 joins the shards
      port=$(( 20000 + RANDOM % 20000 )); pids=()
      for ((r = 0; r < NGPUS; r++)); do
        (threads_per_job "$NGPUS"; cd "$ROOT" && CUDA_VISIBLE_DEVICES=$r "${build[@]}" --fp16 --max-tokens 8192 --distributed-world-size "$NGPUS" \
            --distributed-rank "$r" --distributed-init-method "tcp://localhost:$port") & pids+=($!)
      done
      for p in "${pids[@]}"; do wait "$p"; done
    fi
    TEACHER_ARGS_DISTIL=(--teacher-cache "$CACHE") ;;
  online) TEACHER_ARGS_DISTIL=(--ensemble-paths "$TEACHERS") ;;
  *) echo "error: TEACHER_MODE must be cache or online, got '$TEACHER_MODE'" >&2; exit 2 ;;
esac
pids=()
[[ "$SMOKE" == 1 ]] && threads_per_job 2  # smoke: the jobs below run at once
for c in end:forward_kl_mean_distillation end2:rkl_dirichlet_proxy_distillation; do
  name=${c%%:*}; crit=${c#*:}
  step "$name student ($crit) -> $WMT_OUT/students/$name"
  args=("${STUDENT_ARGS[@]}" --task ensemble_distillation "${TEACHER_ARGS_DISTIL[@]}" --criterion "$crit"
        --init-temp 1 --final-temp 1 --seed 100)
  if [[ "$SMOKE" == 1 ]]; then
    fsq_train "$WMT_OUT/students/$name" "${args[@]}" & pids+=($!)
  else
    fsq_train "$WMT_OUT/students/$name" "${args[@]}"
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
