#!/usr/bin/env bash
# [Proxy] Tables 1-2, step 1: check the data layout under DATA_DIR (see README.md); smoke mode writes digits
# stand-ins in the same layouts.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_imagenet_common.sh"
if [[ "$SMOKE" == 1 ]]; then
  python "$_RECIPE_LIB/standins.py" "$DATA_DIR" --only imagenet imagenet-a imagenet-c imagenet-r imagenet-o --per-class 6 >/dev/null
  step "smoke: digits stand-ins under $DATA_DIR"
fi
require_data imagenet/train
require_data imagenet/val
for d in imagenet-a imagenet-c imagenet-r imagenet-o; do require_data "$d"; done
step "data ok under $DATA_DIR"
