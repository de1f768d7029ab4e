#!/usr/bin/env bash
# Binarise a raw parallel corpus (e.g. the toy corpus) with fairseq-preprocess, as a user would.
#
# Usage: scripts/seq/prepare_toy_data.sh RAW_DIR DEST_DIR [SPM_VOCAB_SIZE]
#
#   RAW_DIR   holds {train,valid,test,test_permuted,test_unseen,test_mixed}.{en,de}
#             (written by `python -m endist_seq.toy_corpus RAW_DIR`; the two OOD
#             files and the partly-unseen test_mixed are optional).
#   DEST_DIR  the fairseq data-bin directory to create. Subsets: train, valid,
#             test, and (when present, numbered in this order) test1 = test_permuted,
#             test2 = test_unseen, test3 = test_mixed (held-out nouns become <unk>: the
#             dictionaries are the training text's); the mapping is written to DEST_DIR/subsets.txt.
#   SPM_VOCAB_SIZE  optional: first train a joint sentencepiece model on the
#             training text (DEST_DIR/spm.model) and binarise the sentencepiece
#             pieces with a joined dictionary. Decode with
#             `fairseq-generate ... --post-process sentencepiece`.
#
# The result appears atomically: everything is built in DEST_DIR.tmp.$$ and renamed at the end.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 RAW_DIR DEST_DIR [SPM_VOCAB_SIZE]" >&2
  exit 2
fi
RAW=$1
DEST=$2
SPM_VOCAB=${3:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-$(command -v python)}
for f in train valid test; do
  for l in en de; do
    [[ -s "$RAW/$f.$l" ]] || { echo "error: missing or empty input file $RAW/$f.$l" >&2; exit 2; }
  done
done
if [[ -n "$SPM_VOCAB" && ! "$SPM_VOCAB" =~ ^[0-9]+$ ]]; then
  echo "error: SPM_VOCAB_SIZE must be a positive integer, got '$SPM_VOCAB'" >&2
  exit 2
fi

TMP="$DEST.tmp.$$"
rm -rf "$TMP"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP"

TESTS=(test)
for ood in test_permuted test_unseen test_mixed; do
  [[ -s "$RAW/$ood.en" && -s "$RAW/$ood.de" ]] && TESTS+=("$ood")
done

TEXT="$RAW"
EXTRA=()
if [[ -n "$SPM_VOCAB" ]]; then
  TEXT="$TMP/spm_text"
  mkdir -p "$TEXT"
  "$PY" "$HERE/spm_encode.py" --vocab-size "$SPM_VOCAB" --model-prefix "$TMP/spm" \
    --train "$RAW/train.en" "$RAW/train.de" --raw-dir "$RAW" --out-dir "$TEXT" \
    --splits train valid "${TESTS[@]}" --langs en de
  EXTRA=(--joined-dictionary)
fi

TESTPREF=$(printf "$TEXT/%s," "${TESTS[@]}")
TESTPREF=${TESTPREF%,}
fairseq-preprocess --source-lang en --target-lang de \
  --trainpref "$TEXT/train" --validpref "$TEXT/valid" --testpref "$TESTPREF" \
  --destdir "$TMP" --workers 1 "${EXTRA[@]}" > "$TMP/preprocess.log" 2>&1 \
  || { cat "$TMP/preprocess.log" >&2; echo "error: fairseq-preprocess failed on $RAW" >&2; exit 1; }

{
  for i in "${!TESTS[@]}"; do
    if [[ $i -eq 0 ]]; then echo "test ${TESTS[$i]}"; else echo "test$i ${TESTS[$i]}"; fi
  done
} > "$TMP/subsets.txt"

rm -rf "$DEST"
mv "$TMP" "$DEST"
trap - EXIT
echo "binarised data in $DEST ($(tr '\n' ' ' < "$DEST/subsets.txt"))"
