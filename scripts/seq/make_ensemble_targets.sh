#!/usr/bin/env bash
# Distil on ensemble-decoded targets ([Proxy] §4.3 recipe): the teacher ensemble translates the
# training source with beam search, and the student is trained on those translations, optionally
# mixed with the reference bitext. Only standard fairseq tools are used (fairseq-generate, then
# fairseq-preprocess with the original dictionaries).
#
# Usage: scripts/seq/make_ensemble_targets.sh DATA_BIN TEACHERS OUT_BIN [--mix-reference] [-- GENERATE_ARGS...]
#
#   DATA_BIN   binarised data the teachers were trained on (dict.SRC.txt, dict.TGT.txt, train, valid, ...)
#   TEACHERS   teacher checkpoints, comma- or colon-separated (decoded as one ensemble)
#   OUT_BIN    new data-bin: train = ensemble translations of DATA_BIN's train source; valid/test* are
#              copied unchanged (same dictionaries, so teachers and student stay compatible).
#   --mix-reference  keep the references as well: they become subset "train" and the ensemble
#              translations "train1"; fairseq-train concatenates train, train1, ... automatically.
#   GENERATE_ARGS    extra fairseq-generate options (default: --beam 5 --max-tokens 4096).
#
# Then:  fairseq-train OUT_BIN --user-dir endist_seq --task ensemble_distillation --ensemble-paths TEACHERS ...
# Environment: SRC_LANG/TGT_LANG (default: inferred from DATA_BIN/train.*.bin), DEVICE_ARGS (default --cpu
# when no GPU is visible).
set -euo pipefail

usage() { echo "usage: $0 DATA_BIN TEACHERS OUT_BIN [--mix-reference] [-- GENERATE_ARGS...]" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
DATA=$1; TEACHERS=${2//,/:}; OUT=$3; shift 3
MIX=0
GEN_ARGS=(--beam 5 --max-tokens 4096)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mix-reference) MIX=1; shift;;
    --) shift; GEN_ARGS=("$@"); break;;
    *) echo "error: unknown option '$1'" >&2; usage;;
  esac
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$(command -v python)}

[[ -d "$DATA" ]] || { echo "error: DATA_BIN $DATA is not a directory" >&2; exit 2; }
IFS=: read -r -a TEACHER_LIST <<< "$TEACHERS"
for t in "${TEACHER_LIST[@]}"; do
  [[ -f "$t" ]] || { echo "error: teacher checkpoint $t does not exist" >&2; exit 2; }
done
if [[ -z "${SRC_LANG:-}" || -z "${TGT_LANG:-}" ]]; then
  pair=$(ls "$DATA" | sed -n 's/^train\.\([^.]*\)-\([^.]*\)\..*\.bin$/\1 \2/p' | head -n 1)
  [[ -n "$pair" ]] || { echo "error: no train.SRC-TGT.*.bin in $DATA; set SRC_LANG and TGT_LANG" >&2; exit 2; }
  read -r SRC_LANG TGT_LANG <<< "$pair"
fi
for l in "$SRC_LANG" "$TGT_LANG"; do
  [[ -f "$DATA/dict.$l.txt" ]] || { echo "error: missing dictionary $DATA/dict.$l.txt" >&2; exit 2; }
done
if [[ -z "${DEVICE_ARGS+x}" ]]; then
  DEVICE_ARGS=$("$PY" -c "import torch; print('' if torch.cuda.is_available() else '--cpu')" 2>/dev/null || echo --cpu)
fi

TMP="$OUT.tmp.$$"
rm -rf "$TMP"; trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/text"
cd "$ROOT"  # for --user-dir endist_seq

# 1. ensemble beam search over the training source (teacher-side tokens, no detokenisation)
# shellcheck disable=SC2086
fairseq-generate "$DATA" --user-dir endist_seq --task translation --source-lang "$SRC_LANG" --target-lang "$TGT_LANG" \
  --path "$TEACHERS" --gen-subset train --nbest 1 $DEVICE_ARGS "${GEN_ARGS[@]}" > "$TMP/generate.out" 2> "$TMP/generate.err" \
  || { tail -n 20 "$TMP/generate.err" >&2; echo "error: fairseq-generate failed" >&2; exit 1; }

# 2. S-/H- lines back into parallel text in the original sentence order
"$PY" - "$TMP/generate.out" "$TMP/text/ens.$SRC_LANG" "$TMP/text/ens.$TGT_LANG" <<'PYEOF'
import sys
src, hyp = {}, {}
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        tag, _, rest = line.rstrip("\n").partition("\t")
        if tag.startswith("S-"):
            src[int(tag[2:])] = rest
        elif tag.startswith("H-"):
            hyp[int(tag[2:])] = rest.partition("\t")[2]
if not src or src.keys() != hyp.keys():
    sys.exit(f"error: fairseq-generate output has {len(src)} sources and {len(hyp)} hypotheses")
ids = sorted(src)
with open(sys.argv[2], "w", encoding="utf-8") as s, open(sys.argv[3], "w", encoding="utf-8") as h:
    for i in ids:
        s.write(src[i] + "\n")
        h.write(hyp[i] + "\n")
print(f"ensemble translated {len(ids)} training sentences")
PYEOF

# 3. binarise with the original dictionaries; copy the other subsets unchanged
SPLIT=train
[[ $MIX == 1 ]] && SPLIT=train1
fairseq-preprocess --source-lang "$SRC_LANG" --target-lang "$TGT_LANG" --trainpref "$TMP/text/ens" \
  --srcdict "$DATA/dict.$SRC_LANG.txt" --tgtdict "$DATA/dict.$TGT_LANG.txt" --destdir "$TMP/bin" --workers 1 \
  > "$TMP/preprocess.log" 2>&1 || { cat "$TMP/preprocess.log" >&2; exit 1; }
mkdir -p "$TMP/out"
for f in "$TMP/bin"/train.*; do mv "$f" "$TMP/out/${SPLIT}${f##*/train}"; done
cp "$DATA/dict.$SRC_LANG.txt" "$DATA/dict.$TGT_LANG.txt" "$TMP/out/"
for f in "$DATA"/*.bin "$DATA"/*.idx; do
  name=${f##*/}
  if [[ $name == train.* && $MIX == 0 ]]; then continue; fi
  [[ $name == train[0-9]* ]] && continue
  cp "$f" "$TMP/out/$name"
done
cp "$TMP/text/ens.$SRC_LANG" "$TMP/text/ens.$TGT_LANG" "$TMP/out/" 2>/dev/null || true
rm -rf "$OUT"; mv "$TMP/out" "$OUT"
echo "ensemble-decoded training data in $OUT ($([[ $MIX == 1 ]] && echo 'train = references, train1 = ensemble' || echo 'train = ensemble'))"
