#!/usr/bin/env bash
# [Proxy] Tables 1-2 (ImageNet ResNet-50, 10 members, EnD vs Proxy-EnD2, ImageNet-A/C/R/O). Usage: run_all_imagenet.sh [--smoke]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
for s in 10_imagenet_check_data 11_imagenet_ensemble 12_imagenet_distill 13_imagenet_evaluate 14_imagenet_table; do
  bash "$HERE/$s.sh" "$@"
done
