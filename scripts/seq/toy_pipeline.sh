#!/usr/bin/env bash
# Toy NMT distillation pipeline: toy corpus -> binarised data -> teachers -> Proxy-EnD2 student -> BLEU.
#
# Usage: scripts/seq/toy_pipeline.sh OUTDIR [data|teachers|student|eval|all]   (default: all)
#
# Every stage runs up to and including the named one and skips outputs that already
# exist, so other scripts (tests, the demo, the uncertainty demo) can reuse OUTDIR:
#   OUTDIR/raw/                       raw text ({train,valid,test,test_permuted,test_unseen,test_mixed}.{en,de},
#                                     test_mixed.unseen = 1 per sentence with a noun held out of training)
#   OUTDIR/data-bin/                  fairseq-preprocess output (test1 = permuted, test2 = unseen source,
#                                     test3 = test_mixed: partly unseen inputs)
#   OUTDIR/teachers/teacherN/checkpoint_last.pt   N = 1..TEACHERS, seed N
#   OUTDIR/student/checkpoint_last.pt           distilled with $CRITERION (OUTDIR/$STUDENT_NAME/ if set)
#   OUTDIR/bleu.txt                   one line per model: name, BLEU on the toy test set
# Each training run writes into a *.tmp directory renamed on success, so an interrupted
# run never leaves a half-written checkpoint that a later stage would pick up.
#
# Knobs (environment): TEACHERS=3 TEACHER_UPDATES=400 STUDENT_UPDATES=600
#   CRITERION=rkl_dirichlet_proxy_distillation INIT_TEMP=1 JOBS=2 (parallel teacher runs, nproc/JOBS threads each:
#   scripts/lib/threads.sh) SEED=1
#   STUDENT_NAME=student (the student's directory under OUTDIR) TEACHER_CACHE= (a cache of endist-seq-cache: the
#   student reads the teachers' outputs from it, --teacher-cache, instead of running them, --ensemble-paths)
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 OUTDIR [data|teachers|student|eval|all]" >&2
  exit 2
fi
OUT=$1
STAGE=${2:-all}
case "$STAGE" in data|teachers|student|eval|all) ;; *)
  echo "error: unknown stage '$STAGE' (expected data, teachers, student, eval or all)" >&2; exit 2;;
esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$(command -v python)}
TEACHERS=${TEACHERS:-3}
TEACHER_UPDATES=${TEACHER_UPDATES:-400}
STUDENT_UPDATES=${STUDENT_UPDATES:-600}
CRITERION=${CRITERION:-rkl_dirichlet_proxy_distillation}
INIT_TEMP=${INIT_TEMP:-1}
JOBS=${JOBS:-2}
SEED=${SEED:-1}
STUDENT_NAME=${STUDENT_NAME:-student}
TEACHER_CACHE=${TEACHER_CACHE:-}
mapfile -t MODEL_ARGS < "$HERE/toy_model.args"
# --data-buffer-size 0: fairseq's background prefetch thread can abort the process at exit
# (rc 134, "terminate called without an active exception") when training stops mid-epoch on CPU.
COMMON=(--cpu --num-workers 0 --data-buffer-size 0 --log-format simple --log-interval 50 --no-epoch-checkpoints
        --optimizer adam --adam-betas '(0.9,0.98)' --lr 5e-3 --lr-scheduler inverse_sqrt --warmup-updates 50
        --batch-size 64 --dropout 0.1 "${MODEL_ARGS[@]}")
mkdir -p "$OUT"
cd "$ROOT"  # --user-dir endist_seq is relative to the repository root

stage_reached() {  # true if the requested stage is at or after $1
  local order=(data teachers student eval all) i want=-1 got=-1
  for i in "${!order[@]}"; do
    [[ ${order[$i]} == "$1" ]] && want=$i
    [[ ${order[$i]} == "$STAGE" ]] && got=$i
  done
  (( got >= want ))
}

# --- data -------------------------------------------------------------------------------
# an OUT made before test_mixed existed: rewrite the raw text (train/valid/test are byte-identical) and rebinarise
if [[ -f "$OUT/raw/manifest.json" && ! -f "$OUT/raw/test_mixed.en" ]]; then rm -f "$OUT/raw/manifest.json"; fi
if [[ -f "$OUT/data-bin/subsets.txt" ]] && ! grep -q " test_mixed$" "$OUT/data-bin/subsets.txt"; then
  rm -f "$OUT/data-bin/subsets.txt"
fi
if [[ ! -f "$OUT/raw/manifest.json" ]]; then
  "$PY" -m endist_seq.toy_corpus "$OUT/raw" --seed "$SEED" 2>&1 | grep -v -i "warn\|tensorboardX" || true
  [[ -f "$OUT/raw/manifest.json" ]] || { echo "error: toy corpus generation failed" >&2; exit 1; }
fi
if [[ ! -f "$OUT/data-bin/subsets.txt" ]]; then
  bash "$HERE/prepare_toy_data.sh" "$OUT/raw" "$OUT/data-bin"
fi
stage_reached teachers || exit 0

# --- teachers -----------------------------------------------------------------------------
train_teacher() {  # $1 = index (also the seed)
  local dir="$OUT/teachers/teacher$1"
  [[ -f "$dir/checkpoint_last.pt" ]] && return 0
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  if ! fairseq-train "$OUT/data-bin" --user-dir endist_seq --task translation --seed "$1" \
      --criterion label_smoothed_cross_entropy --label-smoothing 0.1 "${COMMON[@]}" \
      --max-update "$TEACHER_UPDATES" --disable-validation --save-dir "$dir.tmp" > "$dir.tmp/train.log" 2>&1; then
    tail -n 30 "$dir.tmp/train.log" >&2
    echo "error: training teacher $1 failed (log: $dir.tmp/train.log)" >&2
    return 1
  fi
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  echo "teacher $1 trained: $dir/checkpoint_last.pt"
}
source "$ROOT/scripts/lib/threads.sh"
pids=()
for ((i = 1; i <= TEACHERS; i++)); do
  # cores / parallel jobs threads each (the student below, run alone, keeps the full count)
  ( threads_per_job $(( TEACHERS < JOBS ? TEACHERS : JOBS )) && train_teacher "$i" ) &
  pids+=($!)
  if (( ${#pids[@]} >= JOBS )); then wait "${pids[0]}" || exit 1; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid" || exit 1; done
TEACHER_PATHS=$(for ((i = 1; i <= TEACHERS; i++)); do printf "%s," "$OUT/teachers/teacher$i/checkpoint_last.pt"; done)
TEACHER_PATHS=${TEACHER_PATHS%,}
stage_reached student || exit 0

# --- student (Proxy-EnD2 by default) ------------------------------------------------------
STUDENT="$OUT/$STUDENT_NAME"
if [[ -n "$TEACHER_CACHE" ]]; then TEACHER_ARGS=(--teacher-cache "$TEACHER_CACHE"); else TEACHER_ARGS=(--ensemble-paths "$TEACHER_PATHS"); fi
if [[ ! -f "$STUDENT/checkpoint_last.pt" ]]; then
  rm -rf "$STUDENT.tmp"
  mkdir -p "$STUDENT.tmp"
  if ! fairseq-train "$OUT/data-bin" --user-dir endist_seq --task ensemble_distillation --seed 100 \
      "${TEACHER_ARGS[@]}" --criterion "$CRITERION" "${COMMON[@]}" \
      --init-temp "$INIT_TEMP" --final-temp 1 --anneal-start 0 --anneal-end $((STUDENT_UPDATES / 2)) \
      --max-update "$STUDENT_UPDATES" --save-dir "$STUDENT.tmp" > "$STUDENT.tmp/train.log" 2>&1; then
    tail -n 30 "$STUDENT.tmp/train.log" >&2
    echo "error: training the student failed (log: $STUDENT.tmp/train.log)" >&2
    exit 1
  fi
  rm -rf "$STUDENT" && mv "$STUDENT.tmp" "$STUDENT"
  echo "student trained with $CRITERION: $STUDENT/checkpoint_last.pt"
fi
stage_reached eval || exit 0

# --- eval: one line per model -------------------------------------------------------------
bleu_of() {  # $1 = colon-separated checkpoint paths
  fairseq-generate "$OUT/data-bin" --user-dir endist_seq --task translation --path "$1" \
    --gen-subset test --beam 5 --batch-size 200 --cpu --scoring sacrebleu 2>/dev/null \
    | sed -n 's/^Generate test with beam=[0-9]*: BLEU = \([0-9.]*\).*/\1/p'
}
{
  for ((i = 1; i <= TEACHERS; i++)); do
    printf "%-44s BLEU %6s\n" "teacher$i" "$(bleu_of "$OUT/teachers/teacher$i/checkpoint_last.pt")"
  done
  printf "%-44s BLEU %6s\n" "ensemble of $TEACHERS teachers" "$(bleu_of "${TEACHER_PATHS//,/:}")"
  printf "%-44s BLEU %6s\n" "student ($CRITERION)" "$(bleu_of "$OUT/student/checkpoint_last.pt")"
} > "$OUT/bleu.txt.tmp"
mv "$OUT/bleu.txt.tmp" "$OUT/bleu.txt"
cat "$OUT/bleu.txt"
