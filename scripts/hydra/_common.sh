# Sourced by every step after scripts/lib/recipe_common.sh: the settings of [Hydra] Tables 2 and 3.
# SETTINGS entries: TABLE|NAME|CONFIG_PREFIX|DATA_SUBDIR ("-": embedded)|EVAL OOD (evaluate --ood specs)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SMOKE_EXTRA=(model.kwargs.width=4 model.kwargs.hidden=16 train.max_steps=2 train.batch_size=32
             train.amp=none train.num_workers=0 train.progress=false)
if [[ "$SMOKE" == 1 ]]; then
  MEMBERS=2
  # Table 2 stand-in as in full mode (embedded digits); Table 3 runs its CIFAR-10 configs on digits
  SETTINGS=("table2|digits|digits|-|digits_rotated digits_noise"
            "table3|c10|hydra_cifar10_resnet18|-|digits_rotated")
  EXTRA_table2=("${SMOKE_EXTRA[@]}")
  EXTRA_table3=(data.name=digits data.root=null data.val_size=150 data.augment=none data.ood=[] model.name=digits_cnn
                model.kwargs.stem=null "${SMOKE_EXTRA[@]}")
else
  MEMBERS="${MEMBERS:-50}"        # [Hydra] §3: ensembles of 50 models
  SETTINGS=("table2|digits|digits|-|digits_rotated digits_noise digits_inverted"
            "table3|c10|hydra_cifar10_resnet18|cifar-10-batches-py|svhn=${DATA_DIR:-}/svhn")
  EXTRA_table2=(); EXTRA_table3=()
  [[ -n "${SETTINGS_ONLY:-}" ]] && mapfile -t SETTINGS < <(printf '%s\n' "${SETTINGS[@]}" | grep -E "^(${SETTINGS_ONLY// /|})\|")
fi
# Rows of Tables 2/3: LABEL|method (Prior Networks (Malinin et al., 2019) = EnD2)
STUDENTS=("Prior Networks|end2" "Knowledge distillation|end" "Hydra|hydra")

# extra TABLE: the per-setting overrides; data_args DATA_SUBDIR: data.root for full mode
extra() { local -n _e="EXTRA_$1"; (( ${#_e[@]} == 0 )) || printf '%s\n' "${_e[@]}"; }
need_data() { [[ "$1" == - ]] || require_data "$1"; }
data_args() { [[ "$SMOKE" == 1 || "$1" == - ]] || echo "data.root=${DATA_DIR:-}/$1"; }
run_dir() { echo "$OUT_DIR/$1/$2"; }            # run_dir SETTING RUN
slug() { echo "$1" | tr -c 'A-Za-z0-9\n' '_'; }  # label -> directory name

# vision SUBCOMMAND ARGS...: `endist-vision` (train through vision_train: torchrun, ACCUMULATE, skip finished).
# In smoke mode the command is queued and `vision_flush` runs the queue in one Python process (torch is
# imported once); run_all.sh sets VISION_DEFER=1 for steps 1-4, so the whole smoke recipe runs at step 5.
VISION_QUEUE="$OUT_DIR/.vision_queue"
# vision / vision_flush: see scripts/lib/recipe_common.sh
