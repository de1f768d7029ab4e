# Sourced by the 1N_imagenet_*.sh steps after ../lib/recipe_common.sh.
#   MEMBERS     ensemble size (10 as in [Proxy] §4.2; 2 in smoke mode)
#   IMAGE_SIZE  side of the in-memory images (224 as in the paper)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IM_OUT="$OUT_DIR/imagenet"
mkdir -p "$IM_OUT"
CFG=proxy_imagenet_resnet50
if [[ "$SMOKE" == 1 ]]; then
  MEMBERS="${MEMBERS:-2}"
  # digits stand-in: embedded 8x8 digits, tiny CNN, 3 optimiser steps; OOD stand-ins for O/A/C/R.
  OVR=(data.name=digits data.root=null data.image_size=null data.val_size=150 data.augment=shift
       model.name=digits_cnn model.kwargs.stem=null model.kwargs.zero_init_residual=null
       train.max_steps=3 train.batch_size=32 train.optimizer=adam train.lr=3.0e-3 train.weight_decay=0
       train.num_workers=0 train.amp=none train.progress=false train.log_every=1)
  OOD=(digits_noise digits_inverted digits_rotated digits_shuffled)
  SHIFTS=(ImageNet-O=digits_noise ImageNet-A=digits_inverted ImageNet-C=digits_rotated ImageNet-R=digits_shuffled)
else
  MEMBERS="${MEMBERS:-10}"
  OVR=(data.root="$DATA_DIR/imagenet" data.image_size="${IMAGE_SIZE:-224}")
  OOD=(imagefolder="$DATA_DIR/imagenet-o" imagefolder="$DATA_DIR/imagenet-a" imagefolder="$DATA_DIR/imagenet-c" imagefolder="$DATA_DIR/imagenet-r")
  SHIFTS=(ImageNet-O=imagenet-o ImageNet-A=imagenet-a ImageNet-C=imagenet-c ImageNet-R=imagenet-r)
fi

# vis CMD ARGS...: one endist-vision command; in smoke mode queued and run by vis_flush in one process.
VIS_QUEUE="$IM_OUT/.queue.$$"
vis() {
  if [[ "$SMOKE" == 1 ]]; then
    printf '%q ' "$@" >> "$VIS_QUEUE"; echo >> "$VIS_QUEUE"
  elif [[ "$1" == train ]]; then
    shift; vision_train "$@"
  else
    endist-vision "$@"
  fi
}
vis_flush() {
  [[ -f "$VIS_QUEUE" ]] || return 0
  local rc=0
  python "$HERE/../lib/vision_batch.py" "$VIS_QUEUE" || rc=$?
  rm -f "$VIS_QUEUE"
  return "$rc"
}
