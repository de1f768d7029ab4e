#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 4: evaluate Single (member 1), Ensemble, EnD, EnD2 on ImageNet-val, on the labelled shift
# sets ImageNet-A/C/R (--shift: accuracy, ECE, ...; ImageNet-C averaged over corruptions × severities) and against
# the OOD sets ImageNet-O (and ImageNet-A/R) for detection ROC-AUC.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_imagenet_common.sh"
require_data imagenet
step "evaluate -> $IM_OUT/*/eval*"
vision evaluate --run "$IM_OUT/ensemble" --members 1 --out "$IM_OUT/ensemble/eval_single" --ood "${OOD[@]}" "${SHIFT[@]}"
vision evaluate --run "$IM_OUT/ensemble" --out "$IM_OUT/ensemble/eval" --ood "${OOD[@]}" "${SHIFT[@]}"
for m in end proxy_end2; do
  vision evaluate --run "$IM_OUT/$m" --out "$IM_OUT/$m/eval" --ood "${OOD[@]}" "${SHIFT[@]}"
done
vision_flush
