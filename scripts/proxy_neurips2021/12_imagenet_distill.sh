#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 3: distil the ensemble into one ResNet-50 with EnD and with Proxy-EnD2 (reverse KL, offsets 1).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_imagenet_common.sh"
require_data imagenet
for m in end proxy_end2; do
  step "$m student -> $IM_OUT/$m"
  vision train --config "$CFG"_$m --out "$IM_OUT/$m" "${OVR[@]}" distill.teacher="$IM_OUT/ensemble"
done
vision_flush
