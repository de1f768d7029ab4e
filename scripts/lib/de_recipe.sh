# Sourced (after recipe_common.sh and the recipe's _common.sh) by the steps of the "deep ensemble → students"
# recipes, [LatentBE] (scripts/latentbe_icml2022) and [BE] (scripts/batchensemble_distill): the step bodies
# live here once, each recipe's _common.sh only says what is its own:
#   TAG        "[LatentBE]" / "[BE]" (table titles)
#   SETTINGS   NAME|CONFIG|DATA_SUBDIR|ENSEMBLE_MEMBERS|TEACHER_SIZES|SHIFT|STUDENT_LABELS
#              SHIFT: "LABEL=DATASET:SUBDIR" (evaluate --shift, SUBDIR under DATA_DIR) or "-";
#              STUDENT_LABELS: space-separated labels of STUDENTS trained for this setting, or "-" (all)
#   STUDENTS   LABEL|overrides (one student per teacher size)
#   BASELINES  1: also "Base" (first ensemble member) and "Single KD" (KD from member 1) columns
#   TEACHER_COL  compare column label of the teacher, "%s" = its size (default "DE-%s")
#   EXTRA      overrides appended to every `train` (smoke: tiny model, 2 steps)
#   OOD        evaluate --ood specs (may be empty); OOD_FOR: the settings that get them (default: all)
#   STANDINS   smoke mode: the stand-in sets `python scripts/lib/standins.py` writes into DATA_DIR
#   recipe_student_args SETTING LABEL  (optional function) extra overrides of one student of one setting,
#              e.g. the per-data-set (α, τ) of [LatentBE] App. B.4; LABEL "Single KD" for that baseline
# In smoke mode DATA_DIR is OUT_DIR/standins, filled by de_prepare with digits in the real on-disk layouts,
# so the real loaders (cifar10/100, cifar10_c/100_c, imagenet) run.
if [[ "$SMOKE" == 1 ]]; then export DATA_DIR="$OUT_DIR/standins"; fi
if [[ "$SMOKE" != 1 && -n "${SETTINGS_ONLY:-}" ]]; then
  mapfile -t SETTINGS < <(printf '%s\n' "${SETTINGS[@]}" | grep -E "^(${SETTINGS_ONLY// /|})\|")
fi
BASELINES="${BASELINES:-0}"
TEACHER_COL="${TEACHER_COL:-DE-%s}"

data_args() { echo "data.root=$DATA_DIR/$1"; }   # data_args DATA_SUBDIR
run_dir() { echo "$OUT_DIR/$1/$2"; }             # run_dir SETTING RUN
slug() { echo "$1" | tr -c 'A-Za-z0-9\n' '_'; }  # label -> directory name
student_args() { if declare -F recipe_student_args >/dev/null; then recipe_student_args "$@"; fi; }  # SETTING LABEL

# read_setting ENTRY: sets name cfg sub members sizes shift labels
read_setting() { IFS='|' read -r name cfg sub members sizes shift labels <<<"$1"; }

# students_of LABELS: the STUDENTS entries of a setting ("-": all), in STUDENTS order
students_of() {
  local st
  for st in "${STUDENTS[@]}"; do
    if [[ "$1" == - || " $1 " == *" ${st%%|*} "* ]]; then printf '%s\n' "$st"; fi
  done
}

# shift_args SHIFT: the evaluate --shift arguments of a setting (none for "-")
shift_args() {
  [[ "$1" == - ]] && return 0
  local label="${1%%=*}" spec="${1#*=}"
  printf '%s\n' --shift "$label=${spec%%:*}:$DATA_DIR/${spec#*:}"
}

de_prepare() {
  step "prepare: data"
  if [[ "$SMOKE" == 1 ]]; then
    python "$_RECIPE_LIB/standins.py" "$DATA_DIR" --only "${STANDINS[@]}" --per-class "${STANDIN_PER_CLASS:-6}" >/dev/null
    echo "smoke: digits stand-ins (${STANDINS[*]}) under $DATA_DIR"
  fi
  local s
  for s in "${SETTINGS[@]}"; do
    read_setting "$s"
    require_data "$sub"
    [[ "$shift" == - ]] || require_data "${shift#*:}"
    echo "$name: $DATA_DIR/$sub${shift:+ (shift: ${shift})}"
  done
}

de_train_ensembles() {
  local s
  for s in "${SETTINGS[@]}"; do
    read_setting "$s"
    require_data "$sub"
    step "$name: DE-$members teacher"
    vision train --config "$cfg" --out "$(run_dir "$name" ensemble)" method_args.members="$members" $(data_args "$sub") "${EXTRA[@]}"
  done
  vision_flush
}

de_distill() {
  local s m st label over teacher
  for s in "${SETTINGS[@]}"; do
    read_setting "$s"
    require_data "$sub"
    teacher="$(run_dir "$name" ensemble)"
    if [[ "$BASELINES" == 1 ]]; then   # Single KD = KD from the first member only
      step "$name: Single KD"
      # shellcheck disable=SC2046
      vision train --config "$cfg" --out "$(run_dir "$name" single_kd)" method=end method_args.members=null \
        $(student_args "$name" "Single KD") distill.teacher="$teacher" distill.teacher_members=1 $(data_args "$sub") "${EXTRA[@]}"
    fi
    for m in $sizes; do
      while IFS= read -r st; do
        label="${st%%|*}"; over="${st#*|}"
        step "$name: DE-$m → $label"
        # shellcheck disable=SC2086
        vision train --config "$cfg" --out "$(run_dir "$name" "de$m/$(slug "$label")")" $over $(student_args "$name" "$label") method_args.members=null \
          distill.teacher="$teacher" distill.teacher_members="$m" $(data_args "$sub") "${EXTRA[@]}"
      done < <(students_of "$labels")
    done
  done
  vision_flush
}

# de_evaluate: teacher (DE-M), students (and Base / Single KD) with OOD and the setting's shift set
de_evaluate() {
  local s m st ens
  for s in "${SETTINGS[@]}"; do
    read_setting "$s"
    require_data "$sub"
    ens="$(run_dir "$name" ensemble)"
    local ev=()
    mapfile -t ev < <(shift_args "$shift")
    if (( ${#OOD[@]} )) && [[ -z "${OOD_FOR:-}" || " $OOD_FOR " == *" $name "* ]]; then ev+=(--ood "${OOD[@]}"); fi
    step "$name: evaluate"
    if [[ "$BASELINES" == 1 ]]; then
      vision evaluate --run "$ens" --members 1 --out "$ens/eval_base" ${ev[@]+"${ev[@]}"}   # Base (w/o distillation)
      vision evaluate --run "$(run_dir "$name" single_kd)" ${ev[@]+"${ev[@]}"}
    fi
    for m in $sizes; do
      vision evaluate --run "$ens" --members "$m" --out "$ens/eval_de$m" ${ev[@]+"${ev[@]}"}   # DE-M teacher
      while IFS= read -r st; do
        vision evaluate --run "$(run_dir "$name" "de$m/$(slug "${st%%|*}")")" ${ev[@]+"${ev[@]}"}
      done < <(students_of "$labels")
    done
  done
  vision_flush
}

# de_compare: one `endist-vision compare` table per setting and teacher size -> OUT_DIR/tables/<setting>_de<M>
de_compare() {
  local s m st label ens
  for s in "${SETTINGS[@]}"; do
    read_setting "$s"
    ens="$(run_dir "$name" ensemble)"
    for m in $sizes; do
      local cols=()
      [[ "$BASELINES" == 1 ]] && cols+=("Base=$ens/eval_base" "Single-KD=$(run_dir "$name" single_kd)/eval")
      cols+=("$(printf "$TEACHER_COL" "$m")=$ens/eval_de$m")
      while IFS= read -r st; do
        label="${st%%|*}"; cols+=("$label=$(run_dir "$name" "de$m/$(slug "$label")")/eval")
      done < <(students_of "$labels")
      step "table: $name, students of DE-$m"
      vision compare "${cols[@]}" --title "$TAG $name, DE-$m teacher" --out "$OUT_DIR/tables/${name}_de$m"
    done
  done
  vision_flush
}

# eval_json SETTING RUN_LABEL M: the eval.json of a table column ("DE-M", "Base", "Single-KD" or a student label)
eval_json() {
  local ens; ens="$(run_dir "$1" ensemble)"
  case "$2" in
    DE-*) echo "$ens/eval_de$3/eval.json" ;;
    Base) echo "$ens/eval_base/eval.json" ;;
    Single-KD) echo "$(run_dir "$1" single_kd)/eval/eval.json" ;;
    *) echo "$(run_dir "$1" "de$3/$(slug "$2")")/eval/eval.json" ;;
  esac
}
