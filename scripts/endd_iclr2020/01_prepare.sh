#!/usr/bin/env bash
# Step 1: check the data layout under DATA_DIR (see README.md) and link the OOD image folders as
# OUT_DIR/ood/{LSUN,TIM} (the folder name is the OOD label in the tables). Smoke: embedded data only.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
step "prepare: data"
rm -f "$VISION_QUEUE"   # smoke: a queue left by an interrupted run
echo "Tables 1-2: embedded 3-spiral data (no DATA_DIR needed)"
if [[ "$SMOKE" == 1 ]]; then echo "smoke: Tables 3-4 and App. D use embedded digits"; exit 0; fi
for s in "${IMG_SETTINGS[@]}"; do
  IFS='|' read -r name cfg sub aux ood <<<"$s"
  require_data "$sub"
  echo "$name: $DATA_DIR/$sub"
done
require_data cifar-10-batches-py; require_data cifar-100-python   # AUX data (and C100 OOD for TIM)
require_data LSUN                                                # OOD: LSUN test images (any image folder)
require_data tiny-imagenet-200/val/images                        # OOD for C10/C100: TIM validation images
mkdir -p "$OUT_DIR/ood"
ln -sfn "$(cd "$DATA_DIR/LSUN" && pwd)" "$OUT_DIR/ood/LSUN"
ln -sfn "$(cd "$DATA_DIR/tiny-imagenet-200/val/images" && pwd)" "$OUT_DIR/ood/TIM"
