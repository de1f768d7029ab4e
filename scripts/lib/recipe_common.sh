#!/usr/bin/env bash
# Sourced by every paper recipe step (scripts/<paper>/NN_*.sh). Provides:
#   SMOKE       1 with --smoke (or SMOKE=1): tiny embedded stand-in data, a few steps — what the tests run
#   DATA_DIR    user-given folder with the real datasets (required unless SMOKE=1)
#   OUT_DIR     where runs and tables go (default runs/<recipe>)
#   NGPUS       >1 launches training through torchrun (DDP), one process per GPU
#   ACCUMULATE  gradient accumulation for endist-vision (train.accumulate)
#   UPDATE_FREQ gradient accumulation for fairseq-train (--update-freq)
# and the functions step, die, require_data, vision_train, vision / vision_flush (smoke: one queued Python process)
# and run_steps (a run_all.sh). Shared by several recipes beside this file: de_recipe.sh (the [LatentBE] / [BE]
# step bodies), eval_table.py (paper-layout tables from eval.json / metrics.json), inference_runtime.py (ms/img),
# vision_batch.py (the smoke queue runner), standins.py (smoke data in the real on-disk layouts).
set -euo pipefail
for _arg in "$@"; do
  if [[ "$_arg" == "--smoke" ]]; then SMOKE=1; fi
done
export SMOKE="${SMOKE:-0}"
export NGPUS="${NGPUS:-1}"
export ACCUMULATE="${ACCUMULATE:-1}"
export UPDATE_FREQ="${UPDATE_FREQ:-1}"
RECIPE_NAME="$(basename "$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)")"
export OUT_DIR="${OUT_DIR:-runs/${RECIPE_NAME}}"
mkdir -p "$OUT_DIR"

# threads_per_job JOBS (scripts/lib/threads.sh): steps that start JOBS jobs at once call it first
source "$(dirname "${BASH_SOURCE[0]}")/threads.sh"

step() { printf '\n==> [%s] %s\n' "$RECIPE_NAME" "$*"; }

die() { echo "error: $*" >&2; exit 2; }

# require_data NAME: DATA_DIR/NAME must exist unless in smoke mode.
require_data() {
  [[ "$SMOKE" == 1 ]] && return 0
  [[ -n "${DATA_DIR:-}" ]] || die "DATA_DIR is not set (the folder holding $1); see scripts/${RECIPE_NAME}/README.md"
  [[ -e "$DATA_DIR/$1" ]] || die "DATA_DIR/$1 ($DATA_DIR/$1) does not exist; see scripts/${RECIPE_NAME}/README.md"
}

# vision_train ARGS...: endist-vision train, through torchrun when NGPUS > 1; skips finished runs.
vision_train() {
  local out=""
  local prev=""
  for a in "$@"; do [[ "$prev" == "--out" ]] && out="$a"; prev="$a"; done
  if [[ -n "$out" && -f "$out/checkpoints/final.pt" ]]; then echo "skip: $out is finished"; return 0; fi
  if [[ "$NGPUS" -gt 1 ]]; then
    torchrun --standalone --nproc_per_node "$NGPUS" "$(command -v endist-vision)" train "$@" "train.accumulate=$ACCUMULATE"
  else
    endist-vision train "$@" "train.accumulate=$ACCUMULATE"
  fi
}

# vision SUBCOMMAND ARGS...: `endist-vision` (train through vision_train: torchrun, ACCUMULATE, skip finished).
# In smoke mode the command is appended to $VISION_QUEUE and `vision_flush` runs the queue in one Python
# process (scripts/lib/vision_batch.py), so torch is imported once instead of once per command; a run_all.sh
# may export VISION_DEFER=1 so that the whole smoke recipe runs in one process at its last step.
_RECIPE_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VISION_QUEUE="${VISION_QUEUE:-$OUT_DIR/.vision_queue}"
vision() {
  local sub="$1"; shift
  if [[ "$SMOKE" == 1 ]]; then
    local extra=()
    [[ "$sub" == train ]] && extra=("train.accumulate=$ACCUMULATE")
    printf '%q ' "$sub" "$@" "${extra[@]}" >> "$VISION_QUEUE"; echo >> "$VISION_QUEUE"
  elif [[ "$sub" == train ]]; then
    vision_train "$@"
  else
    endist-vision "$sub" "$@"
  fi
}
vision_flush() {
  [[ "$SMOKE" == 1 && -f "$VISION_QUEUE" && "${VISION_DEFER:-0}" != 1 ]] || return 0
  python "$_RECIPE_LIB/vision_batch.py" "$VISION_QUEUE"
  rm -f "$VISION_QUEUE"
}

# run_steps DIR ARGS...: a recipe's steps 01..05 in order (its run_all.sh). In smoke mode steps 01-04 only
# queue their endist-vision commands (VISION_DEFER=1, one queue OUT_DIR/.vision_queue) and 05_table.sh runs the
# whole queue in one Python process (vision_flush: torch imported once) before printing its tables.
run_steps() {
  local d="$1" s; shift
  rm -f "$VISION_QUEUE"   # a queue left by an interrupted smoke run
  for s in 01_prepare 02_train_ensemble 03_distill 04_evaluate; do
    VISION_DEFER=1 bash "$d/$s.sh" "$@"
  done
  bash "$d/05_table.sh" "$@"
}
