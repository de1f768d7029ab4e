# Sourced by every step after scripts/lib/recipe_common.sh: the settings of [Hydra] Tables 2 and 3.
# SETTINGS entries: TABLE|NAME|CONFIG_PREFIX|DATA_SUBDIR|EVAL OOD (evaluate --ood specs, space separated; "-": none)
# In smoke mode DATA_DIR is OUT_DIR/standins: digits written in the real MNIST / CIFAR-10 layouts
# (python scripts/lib/standins.py), so the real loaders run.
SMOKE_EXTRA=(train.max_steps=2 train.batch_size=16 train.amp=none train.num_workers=0 train.progress=false data.val_size=20)
if [[ "$SMOKE" == 1 ]]; then
  export DATA_DIR="$OUT_DIR/standins"
  MEMBERS=2
  STANDINS=(mnist cifar10 imagenet-o)
  SETTINGS=("table2|mnist|hydra_mnist_mlp|mnist|-"
            "table3|c10|hydra_cifar10_resnet20|cifar-10-batches-py|imagenet_o=$DATA_DIR/imagenet-o")
  EXTRA_table2=(model.kwargs.hidden=16 "${SMOKE_EXTRA[@]}")
  EXTRA_table3=("${SMOKE_EXTRA[@]}")
else
  MEMBERS="${MEMBERS:-50}"        # [Hydra] §3: ensembles of 50 models
  STANDINS=()
  SETTINGS=("table2|mnist|hydra_mnist_mlp|mnist|-"
            "table3|c10|hydra_cifar10_resnet20|cifar-10-batches-py|svhn=${DATA_DIR:-}/svhn")
  EXTRA_table2=(); EXTRA_table3=()
  [[ -n "${SETTINGS_ONLY:-}" ]] && mapfile -t SETTINGS < <(printf '%s\n' "${SETTINGS[@]}" | grep -E "^(${SETTINGS_ONLY// /|})\|")
fi
# Rows of Tables 2/3: LABEL|method (Prior Networks (Malinin et al., 2019) = EnD2)
STUDENTS=("Prior Networks|end2" "Knowledge distillation|end" "Hydra|hydra")

# extra TABLE: the per-setting overrides; data_args DATA_SUBDIR: the data.root override
extra() { local -n _e="EXTRA_$1"; (( ${#_e[@]} == 0 )) || printf '%s\n' "${_e[@]}"; }
data_args() { echo "data.root=${DATA_DIR:-}/$1"; }
run_dir() { echo "$OUT_DIR/$1/$2"; }            # run_dir SETTING RUN

# vision SUBCOMMAND ARGS...: `endist-vision` (train through vision_train: torchrun, ACCUMULATE, skip finished).
# In smoke mode the command is queued; run_all.sh (run_steps) sets VISION_DEFER=1 for steps 1-4, so that the
# whole smoke recipe runs in one Python process at step 5 (see scripts/lib/recipe_common.sh).

# each_setting FN: for every setting (its DATA_SUBDIR checked) call FN with table, name, cfg, sub, ood and ex
# (the setting's extra overrides) set; then run the queue (vision_flush)
each_setting() {
  local s
  for s in "${SETTINGS[@]}"; do
    IFS='|' read -r table name cfg sub ood <<<"$s"
    require_data "$sub"
    mapfile -t ex < <(extra "$table")
    "$1"
  done
  vision_flush
}
