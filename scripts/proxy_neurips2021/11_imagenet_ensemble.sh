#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 2: train the ResNet-50 ensemble (MEMBERS=10 members, one run; `Single` = member 1).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_imagenet_common.sh"
require_data imagenet
step "ensemble of $MEMBERS ResNet-50 -> $IM_OUT/ensemble"
vision train --config "$CFG"_ensemble --out "$IM_OUT/ensemble" "${OVR[@]}" method_args.members="$MEMBERS"
vision_flush
