#!/usr/bin/env bash
# [Proxy] Tables 1-2 (ImageNet ResNet-50, 10 members, EnD vs Proxy-EnD2, ImageNet-A/C/R/O). Usage: run_all_imagenet.sh [--smoke]
# Smoke mode: steps 10-13 queue their endist-vision commands, step 14 runs them in one Python process.
source "$(dirname "$0")/../lib/recipe_common.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
export VISION_QUEUE="$OUT_DIR/.vision_queue_imagenet"
rm -f "$VISION_QUEUE"
for s in 10_imagenet_check_data 11_imagenet_ensemble 12_imagenet_distill 13_imagenet_evaluate; do
  VISION_DEFER=1 bash "$HERE/$s.sh" "$@"
done
bash "$HERE/14_imagenet_table.sh" "$@"
