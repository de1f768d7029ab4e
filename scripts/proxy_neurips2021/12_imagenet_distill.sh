#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 3: distil the ensemble into one ResNet-50 with EnD and with Proxy-EnD2 (reverse KL, offsets 1).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_imagenet_common.sh"
require_data imagenet
# The recipes' distill.teacher_mode=topk_cache: the first student runs the teachers once over the un-augmented
# images and writes $IM_OUT/teacher_cache (memory-mapped top-64 records); the second reuses it (checked against
# its manifest). TEACHER_MODE=online runs the teachers on every augmented batch instead, as in [Proxy].
TM=(distill.teacher_cache="$IM_OUT/teacher_cache")
if [[ "${TEACHER_MODE:-topk_cache}" != topk_cache ]]; then TM=(distill.teacher_mode="$TEACHER_MODE"); fi
for m in end proxy_end2; do
  step "$m student -> $IM_OUT/$m"
  vision train --config "$CFG"_$m --out "$IM_OUT/$m" "${OVR[@]}" distill.teacher="$IM_OUT/ensemble" "${TM[@]}"
done
vision_flush
