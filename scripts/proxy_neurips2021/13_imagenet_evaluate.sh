#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 4: evaluate Single (member 1), Ensemble, EnD, EnD2 on ImageNet-val and ImageNet-O/A/C/R.
source "$(dirname "$0")/../lib/recipe_common.sh"
require_data imagenet
source "$(dirname "$0")/_imagenet_common.sh"
step "evaluate -> $IM_OUT/*/eval*"
vis evaluate --run "$IM_OUT/ensemble" --members 1 --out "$IM_OUT/ensemble/eval_single" --ood "${OOD[@]}"
vis evaluate --run "$IM_OUT/ensemble" --out "$IM_OUT/ensemble/eval" --ood "${OOD[@]}"
for m in end proxy_end2; do
  vis evaluate --run "$IM_OUT/$m" --out "$IM_OUT/$m/eval" --ood "${OOD[@]}"
done
vis_flush
