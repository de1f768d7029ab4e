# Sourced by the 2N_wmt_*.sh steps after ../lib/recipe_common.sh.
#   MEMBERS          teachers (10 as in [Proxy] §4.3; 2 in smoke mode)
#   UPDATE_FREQ      distillation --update-freq; the library default 1 means "the paper's 32 / NGPUS"
#   TEACHER_UPDATE_FREQ  teacher --update-freq (default 8 / NGPUS: the paper's 8 GPUs x 4096 tokens)
#   SPM_VOCAB        joint sentencepiece vocabulary (40000, the paper's 40k BPE); not used in smoke mode
#   SMOKE_UPDATES    smoke mode only: --max-update of the teachers and students (default 40: plumbing only)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT_DIR="$(mkdir -p "$OUT_DIR" && cd "$OUT_DIR" && pwd)"  # absolute: the steps cd to the repository root
WMT_OUT="$OUT_DIR/wmt"
RAW="$WMT_OUT/raw"
BIN="$WMT_OUT/data-bin"
mkdir -p "$WMT_OUT"
# test subsets of $BIN: newstest14 and the four OOD sets of [Proxy] Table 4, in this order
OOD_NAMES=(Permuted Speech German French)
if [[ "$SMOKE" == 1 ]]; then
  MEMBERS="${MEMBERS:-2}"
  MODEL_ARGS=(); mapfile -t MODEL_ARGS < "$ROOT/scripts/seq/toy_model.args"
  # --data-buffer-size 0: fairseq's prefetch thread can abort the process at exit on CPU (docs/seq_training.md)
  DEVICE=(--cpu --num-workers 0 --data-buffer-size 0)
  TEACHER_ARGS=(--task translation "${MODEL_ARGS[@]}" --criterion label_smoothed_cross_entropy --label-smoothing 0.1
                --optimizer adam --adam-betas '(0.9,0.98)' --lr 5e-3 --lr-scheduler inverse_sqrt --warmup-updates 10
                --dropout 0.1 --batch-size 64 --max-update "${SMOKE_UPDATES:-40}" --update-freq 1)
  STUDENT_ARGS=("${MODEL_ARGS[@]}" --optimizer adam --adam-betas '(0.9,0.98)' --lr 5e-3 --lr-scheduler inverse_sqrt
                --warmup-updates 10 --dropout 0.1 --batch-size 64 --max-update "${SMOKE_UPDATES:-40}" --update-freq "$UPDATE_FREQ")
  GEN_EXTRA=(--cpu --batch-size 64 --nbest 1 --max-len-a 1 --max-len-b 5)  # short outputs: the 40-update models babble
else
  MEMBERS="${MEMBERS:-10}"
  DIST=(--distributed-world-size "$NGPUS")
  DEVICE=(--num-workers 4 --fp16 "${DIST[@]}")
  TUF="${TEACHER_UPDATE_FREQ:-$(( NGPUS >= 8 ? 1 : 8 / NGPUS ))}"
  SUF="$UPDATE_FREQ"; [[ "$SUF" == 1 ]] && SUF=$(( NGPUS >= 32 ? 1 : 32 / NGPUS ))
  # teachers: transformer-big as in Ott et al. 2018 ([Proxy] ref. 28), 193k updates
  TEACHER_ARGS=(--task translation --arch transformer_wmt_en_de_big --share-all-embeddings
                --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --dropout 0.3 --weight-decay 0.0
                --optimizer adam --adam-betas '(0.9,0.98)' --clip-norm 0.0 --lr 1e-3 --lr-scheduler inverse_sqrt
                --warmup-updates 4000 --warmup-init-lr 1e-07 --max-tokens 4096 --update-freq "$TUF" --max-update 193000)
  # distillation ([Proxy] §4.3): 20k updates of 1024 tokens x 32 accumulation steps
  STUDENT_ARGS=(--arch transformer_wmt_en_de_big --share-all-embeddings --dropout 0.3
                --optimizer adam --adam-betas '(0.9,0.98)' --clip-norm 0.0 --lr 5e-4 --lr-scheduler inverse_sqrt
                --warmup-updates 4000 --warmup-init-lr 1e-07 --max-tokens 1024 --update-freq "$SUF" --max-update 20000
                --fp16-ensemble)
  GEN_EXTRA=(--max-tokens 4096 --nbest 5 --post-process sentencepiece --fp16)
fi
COMMON_TRAIN=(--user-dir endist_seq --log-format simple --log-interval 100 --no-epoch-checkpoints --disable-validation "${DEVICE[@]}")
teacher_paths() {  # SEP: the teacher checkpoints joined by SEP
  local out="" i
  for ((i = 1; i <= MEMBERS; i++)); do out+="${out:+$1}$WMT_OUT/teachers/t$i/checkpoint_last.pt"; done
  echo "$out"
}
# fsq_train DIR ARGS...: fairseq-train into DIR.tmp, renamed to DIR on success; skipped when DIR exists.
fsq_train() {
  local dir=$1; shift
  [[ -f "$dir/checkpoint_last.pt" ]] && { echo "skip: $dir is finished"; return 0; }
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
  if ! (cd "$ROOT" && fairseq-train "$BIN" "${COMMON_TRAIN[@]}" "$@" --save-dir "$dir.tmp") > "$dir.tmp/train.log" 2>&1; then
    tail -n 30 "$dir.tmp/train.log" >&2
    echo "error: fairseq-train failed (log: $dir.tmp/train.log)" >&2
    return 1
  fi
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  echo "trained: $dir/checkpoint_last.pt"
}
