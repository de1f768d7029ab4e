#!/usr/bin/env bash
# [Proxy] Tables 3-4, step 1: raw text -> newstest14 + the four OOD source sets -> (sentencepiece 40k) -> fairseq data-bin.
#   full:  DATA_DIR/wmt17_en_de/{train,valid,test}.{en,de} (test = newstest2014), ood/librispeech.en, ood/newstest2014.fr
#   smoke: the generated toy corpus (python -m endist_seq.toy_corpus), first 50 test sentences, word-level vocabulary
# OOD sets (source side only matters; the target side is a placeholder for fairseq-preprocess):
#   Permuted = newstest14 source with shuffled tokens (python -m endist_seq.ood), Speech = LibriSpeech test-clean
#   transcripts, German = newstest14 German side as source, French = newstest14 French source.
source "$(dirname "$0")/../lib/recipe_common.sh"
require_data wmt17_en_de/train.en
require_data wmt17_en_de/test.de
require_data wmt17_en_de/ood/librispeech.en
require_data wmt17_en_de/ood/newstest2014.fr
source "$(dirname "$0")/_wmt_common.sh"
if [[ -f "$BIN/subsets.txt" ]]; then echo "skip: $BIN exists"; exit 0; fi
rm -rf "$RAW"; mkdir -p "$RAW"
if [[ "$SMOKE" == 1 ]]; then
  step "toy corpus -> $RAW"
  TOY="$WMT_OUT/toy"
  [[ -f "$TOY/manifest.json" ]] || python -m endist_seq.toy_corpus "$TOY" --train 1500 --valid 20 --test 50 > /dev/null 2>&1
  for s in train valid test; do cp "$TOY/$s.en" "$TOY/$s.de" "$RAW/"; done
  # stand-ins: Speech = test sources with every second token dropped; French = unseen pseudo-French source
  awk '{o=""; for (i = 1; i <= NF; i += 2) o = o (o ? " " : "") $i; print o}' "$TOY/test.en" > "$RAW/ood_speech.en"
  cp "$TOY/test_unseen.en" "$RAW/ood_french.en"
else
  step "WMT17 En-De raw text from $DATA_DIR/wmt17_en_de -> $RAW"
  D="$DATA_DIR/wmt17_en_de"
  for s in train valid test; do cp "$D/$s.en" "$D/$s.de" "$RAW/"; done
  cp "$D/ood/librispeech.en" "$RAW/ood_speech.en"
  cp "$D/ood/newstest2014.fr" "$RAW/ood_french.en"
fi
python -m endist_seq.ood --src "$RAW/test.en" --tgt "$RAW/test.de" --out-prefix "$RAW/ood_permuted" 2>/dev/null
cp "$RAW/test.de" "$RAW/ood_german.en"
for o in speech german french; do cp "$RAW/ood_$o.en" "$RAW/ood_$o.de"; done  # placeholder references
TESTS=(test ood_permuted ood_speech ood_german ood_french)
TEXT="$RAW"; EXTRA=()
if [[ "$SMOKE" != 1 ]]; then
  step "joint sentencepiece ${SPM_VOCAB:-40000}"
  TEXT="$WMT_OUT/spm_text"
  python "$ROOT/scripts/seq/spm_encode.py" --vocab-size "${SPM_VOCAB:-40000}" --model-prefix "$WMT_OUT/spm" \
    --train "$RAW/train.en" "$RAW/train.de" --raw-dir "$RAW" --out-dir "$TEXT" --splits train valid "${TESTS[@]}" --langs en de
  EXTRA=(--joined-dictionary --workers 16)
fi
step "fairseq-preprocess -> $BIN (test = newstest14, test1..4 = ${OOD_NAMES[*]})"
TESTPREF=$(printf "$TEXT/%s," "${TESTS[@]}")
rm -rf "$BIN.tmp"
fairseq-preprocess --source-lang en --target-lang de --trainpref "$TEXT/train" --validpref "$TEXT/valid" \
  --testpref "${TESTPREF%,}" --destdir "$BIN.tmp" "${EXTRA[@]}" > "$WMT_OUT/preprocess.log" 2>&1 \
  || { tail -n 20 "$WMT_OUT/preprocess.log" >&2; die "fairseq-preprocess failed (log: $WMT_OUT/preprocess.log)"; }
printf '%s\n' "test test" "test1 Permuted" "test2 Speech" "test3 German" "test4 French" > "$BIN.tmp/subsets.txt"
rm -rf "$BIN"; mv "$BIN.tmp" "$BIN"
