#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 1: check the data layout under DATA_DIR (see README.md). Smoke: embedded digits.
source "$(dirname "$0")/../lib/recipe_common.sh"
require_data imagenet/wnids.txt
require_data imagenet/val/val_annotations.txt
for d in imagenet-a imagenet-c imagenet-r imagenet-o; do require_data "$d"; done
if [[ "$SMOKE" == 1 ]]; then step "smoke: embedded digits stand-in"; else step "data ok under $DATA_DIR"; fi
