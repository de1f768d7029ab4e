# Sourced by every step after scripts/lib/recipe_common.sh: the settings of [EnD2] Tables 1-4 and App. D.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# ---- Tables 1-2 (spirals, embedded data, CPU). SP_SIZES: teacher sizes (the ensemble has the largest).
# IMG_SETTINGS entries: NAME|CONFIG_PREFIX|DATA_SUBDIR|AUX (YAML)|OOD (evaluate --ood specs, space separated)
if [[ "$SMOKE" == 1 ]]; then
  SP_SIZES="${SP_SIZES:-3}"
  SP_EXTRA=(train.max_steps=2 train.progress=false eval.grid_size=16)
  MEMBERS=3
  IMG_SETTINGS=("digits|cifar10_vgg|-|digits_shuffled|digits_noise digits_rotated")
  IMG_EXTRA=(data.name=digits data.root=null data.val_size=150 data.augment=none model.name=digits_cnn
             model.kwargs.width=4 model.kwargs.hidden=16 train.max_steps=2 train.batch_size=32
             train.amp=none train.num_workers=0 train.progress=false)
  ABL_SETTINGS="digits"; ABL_SIZES="2 3"; ABL_TEMPS="1 10"
else
  SP_SIZES="${SP_SIZES:-10 100}"
  SP_EXTRA=()
  MEMBERS="${MEMBERS:-100}"        # [EnD2] §5: ensembles of 100 VGG-16 per data set
  # TinyImageNet is read at 32x32 (data.image_size: 32 in its configs) so that CIFAR AUX / C100 OOD images fit.
  IMG_SETTINGS=("c10|cifar10_vgg|cifar-10-batches-py|{name: cifar100, root: ${DATA_DIR:-}/cifar-100-python}|imagefolder=$OUT_DIR/ood/LSUN imagefolder=$OUT_DIR/ood/TIM"
                "c100|endd_cifar100_vgg|cifar-100-python|{name: cifar10, root: ${DATA_DIR:-}/cifar-10-batches-py}|imagefolder=$OUT_DIR/ood/LSUN imagefolder=$OUT_DIR/ood/TIM"
                "tim|endd_tinyimagenet_vgg|tiny-imagenet-200|{name: cifar10, root: ${DATA_DIR:-}/cifar-10-batches-py}|imagefolder=$OUT_DIR/ood/LSUN cifar100=${DATA_DIR:-}/cifar-100-python")
  IMG_EXTRA=()
  [[ -n "${SETTINGS_ONLY:-}" ]] && mapfile -t IMG_SETTINGS < <(printf '%s\n' "${IMG_SETTINGS[@]}" | grep -E "^(${SETTINGS_ONLY// /|})\|")
  ABL_SETTINGS="${ABL_SETTINGS:-c10 c100}"         # App. D: EnD2+AUX on C10 and C100
  ABL_SIZES="${ABL_SIZES:-5 20 50 100}"            # App. D ensemble sizes (<= MEMBERS)
  ABL_TEMPS="${ABL_TEMPS:-1 2 5 10 20}"            # App. D initial temperatures T0
fi
SP_FULL="${SP_SIZES##* }"   # the largest size = the trained spiral ensemble

# data_args DATA_SUBDIR: the data.root override for full mode
data_args() { [[ "$SMOKE" == 1 ]] || echo "data.root=${DATA_DIR:-}/$1"; }
run_dir() { echo "$OUT_DIR/$1/$2"; }   # run_dir SETTING RUN
in_list() { [[ " $2 " == *" $1 "* ]]; }  # in_list WORD "LIST"

# vision SUBCOMMAND ARGS...: `endist-vision` (train through vision_train: torchrun, ACCUMULATE, skip finished).
# In smoke mode the command is queued and `vision_flush` runs the queue in one Python process, so that
# torch is imported once per step instead of once per command (the test budget is a minute); run_all.sh
# sets VISION_DEFER=1 for steps 1-4, so that the whole smoke recipe runs in one process at step 5.
VISION_QUEUE="$OUT_DIR/.vision_queue"
# vision / vision_flush: see scripts/lib/recipe_common.sh
