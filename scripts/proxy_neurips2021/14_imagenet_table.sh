#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 5: print our Tables 1-2 in the paper's layout -> $OUT_DIR/imagenet/tables.md
#   Table 1: accuracy / ECE (%) on ImageNet-val and on the shift sets ImageNet-A/C/R (C: mean over corruptions × severities)
#   Table 2: OOD detection ROC-AUC (%) on ImageNet-O, -A, -R with EoE (entropy of the expected prediction) and RMI
#            (reverse mutual information; null in eval.json and "–" in the table for Single and EnD, as in the paper)
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_imagenet_common.sh"
vision_flush   # smoke mode (run_all_imagenet.sh): runs the queued steps 11-13 first
step "Tables 1-2 -> $IM_OUT/tables.md"
rows=()
for r in "Single|ensemble/eval_single" "Ensemble|ensemble/eval" "EnD|end/eval" "EnD2|proxy_end2/eval"; do
  rows+=(--row "${r%%|*}" "eval=$IM_OUT/${r#*|}/eval.json")
done
cols1=(--col "ImageNet-val Acc=eval:test/accuracy:pct1" --col "ImageNet-val ECE=eval:test/ece:pct1")
for s in A C R; do
  cols1+=(--col "ImageNet-$s Acc=eval:shift/ImageNet-$s/mean/accuracy:pct1" --col "ImageNet-$s ECE=eval:shift/ImageNet-$s/mean/ece:pct1")
done
cols2=()
for s in "O|imagenet_o" "A|imagenet-a" "R|imagenet-r"; do
  cols2+=(--col "ImageNet-${s%%|*} EoE=eval:ood/${s#*|}/total_roc_auc:pct1" --col "ImageNet-${s%%|*} RMI=eval:ood/${s#*|}/rmi_roc_auc:pct1")
done
TABLE=(python "$HERE/../lib/eval_table.py")
"${TABLE[@]}" --title "Table 1: Prediction quality results for image classification (%)." "${cols1[@]}" "${rows[@]}" --out "$IM_OUT/tables.md"
"${TABLE[@]}" --title "Table 2: Out-of-distribution detection results for image classification (ROC-AUC, %)." "${cols2[@]}" \
  "${rows[@]}" --out "$IM_OUT/tables.md" --append
