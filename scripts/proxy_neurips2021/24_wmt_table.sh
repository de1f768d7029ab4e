#!/usr/bin/env bash
# [Proxy] Tables 3-4, step 5: BLEU, sequence-level PRR and OOD ROC-AUC (EoE, RMI) -> $OUT_DIR/wmt/report/seq_eval.md;
# EnD2's BLEU and |score + tu_pe| with softmax vs alpha/alpha0 search -> $OUT_DIR/wmt/report/dirichlet_decoding.md
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_wmt_common.sh"
G="$WMT_OUT/generate"
args=()
for m in Single:single Ensemble:ensemble EnD:end EnD2:end2; do
  label=${m%%:*}; d="$G/${m#*:}"
  args+=(--model "$label" --id "$d/generate-test.txt")
  for i in 1 2 3 4; do args+=(--ood "${OOD_NAMES[$((i - 1))]}=$d/generate-test$i.txt"); done
done
plots=(); [[ "$SMOKE" == 1 ]] && plots=(--no-plots)
step "Tables 3-4 -> $WMT_OUT/report/seq_eval.md"
endist-seq-eval --out-dir "$WMT_OUT/report" --title "[Proxy] Tables 3-4: WMT17 En-De" "${plots[@]}" "${args[@]}" 2>/dev/null
step "EnD2 search: softmax(z) vs --dirichlet-mean-decoding -> $WMT_OUT/report/dirichlet_decoding.md"
(cd "$ROOT" && python "$HERE/_dirichlet_decoding.py" --softmax "$G/end2/generate-test.txt" \
  --mean "$G/end2_mean/generate-test.txt" --out "$WMT_OUT/report/dirichlet_decoding.md")
