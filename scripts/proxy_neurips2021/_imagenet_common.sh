# Sourced by the 1N_imagenet_*.sh steps after ../lib/recipe_common.sh.
#   MEMBERS          ensemble size (10 as in [Proxy] §4.2; 2 in smoke mode)
#   IMAGE_SIZE       training / evaluation crop (224 as in the paper)
#   SHIFT_MAX        optional: at most N images per shift (sub)set (evaluate --shift-max-per-set; a fixed random
#                    sample, the same for every model; applies to ImageNet-A/R and to each ImageNet-C corruption/severity)
#   EVAL_WORKERS     decoding workers of evaluate (default: the configs' eval.num_workers)
# Smoke mode: DATA_DIR is OUT_DIR/standins, digits written in the real ImageNet / -A / -C / -R / -O layouts
# (python scripts/lib/standins.py), so the real loaders run.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IM_OUT="$OUT_DIR/imagenet"   # created by the first run (nothing is written before the data checks)
CFG=proxy_imagenet_resnet50
if [[ "$SMOKE" == 1 ]]; then
  export DATA_DIR="$OUT_DIR/standins"
  MEMBERS="${MEMBERS:-2}"
  # 32 px crops of the stand-in JPEGs, a small MLP, 3 optimiser steps
  OVR=(data.root="$DATA_DIR/imagenet" data.image_size=32 data.val_size=20 model.name=mlp model.kwargs.stem=null
       model.kwargs.zero_init_residual=null model.kwargs.in_features=3072 model.kwargs.hidden=16 model.kwargs.depth=2
       train.max_steps=3 train.batch_size=16 train.optimizer=adam train.lr=3.0e-3 train.weight_decay=0
       train.num_workers=0 train.amp=none train.progress=false train.log_every=1 eval.num_workers=0)
else
  MEMBERS="${MEMBERS:-10}"
  OVR=(data.root="$DATA_DIR/imagenet" data.image_size="${IMAGE_SIZE:-224}")
fi
# ImageNet-O: OOD (unlabeled, lazily decoded); ImageNet-A/R also as OOD image folders for Table 2's detection
# columns (held in memory at IMAGE_SIZE); ImageNet-A/C/R as labelled shift sets for Table 1's Acc/ECE.
OOD=("imagenet_o=$DATA_DIR/imagenet-o" "imagefolder=$DATA_DIR/imagenet-a" "imagefolder=$DATA_DIR/imagenet-r")
SHIFT=(--shift "ImageNet-A=imagenet_a:$DATA_DIR/imagenet-a" "ImageNet-C=imagenet_c:$DATA_DIR/imagenet-c"
       "ImageNet-R=imagenet_r:$DATA_DIR/imagenet-r")
if [[ -n "${SHIFT_MAX:-}" ]]; then SHIFT+=(--shift-max-per-set "$SHIFT_MAX"); fi
if [[ -n "${EVAL_WORKERS:-}" ]]; then SHIFT+=(--workers "$EVAL_WORKERS"); fi
# vision / vision_flush: scripts/lib/recipe_common.sh (smoke: queued; run_all_imagenet.sh runs the queue at step 14)
