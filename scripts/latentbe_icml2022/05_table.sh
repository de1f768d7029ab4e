#!/usr/bin/env bash
# Step 5: the tables, printed and written under OUT_DIR/tables/:
#   <setting>_de<M>/tables.md  endist-vision compare (criteria × methods, with OOD and shift rows)
#   <setting>_de<M>/paper.md   Tables 2/3/6/7 in the paper's layout (methods × ACC/NLL/ECE/cNLL/cECE)
#   table4.md                  Table 4: CIFAR-10-C / CIFAR-100-C (mean over corruptions × severities), DE-4 students
#   table5.md                  Table 5: training wall time (metrics.json) and inference ms/img measured here
#                              (runtime_<setting>.json: BE multi-pass, BE parallel, LatentBE merged, same device)
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
de_compare   # (smoke mode: runs the whole queue of steps 2-5 first)
T="$OUT_DIR/tables"
TABLE=(python "$(dirname "$0")/../lib/eval_table.py")
ACC=(--col "ACC=eval:test/accuracy:pct2" --col "NLL=eval:test/nll:f3" --col "ECE=eval:test/ece:f3"
     --col "cNLL=eval:test/calibrated_nll:f3" --col "cECE=eval:test/calibrated_ece:f3")

# teacher_size SIZES: 4 if among the sizes (Tables 4, 5 use DE-4), else the largest
teacher_size() { local s; for s in $1; do [[ "$s" == 4 ]] && { echo 4; return; }; done; echo "${1##* }"; }

for s in "${SETTINGS[@]}"; do
  read_setting "$s"
  for m in $sizes; do
    rows=()
    [[ "$BASELINES" == 1 ]] && rows+=(--row "Base (w/o distillation)" "eval=$(eval_json "$name" Base "$m")"
                                      --row "Single KD" "eval=$(eval_json "$name" Single-KD "$m")")
    rows+=(--row "DE-$m teacher" "eval=$(eval_json "$name" "DE-$m" "$m")")
    while IFS= read -r st; do rows+=(--row "${st%%|*}" "eval=$(eval_json "$name" "${st%%|*}" "$m")"); done < <(students_of "$labels")
    step "paper layout: $name, DE-$m"
    "${TABLE[@]}" --title "$TAG $name, students of DE-$m (ACC %, NLL, ECE, calibrated NLL / ECE)" "${ACC[@]}" "${rows[@]}" \
      --out "$T/${name}_de$m/paper.md"
  done
done

# Table 4: settings with a shift set, DE-4 teacher and the single-network students
rows=()
for s in "${SETTINGS[@]}"; do
  read_setting "$s"
  [[ "$shift" == - ]] && continue
  m="$(teacher_size "$sizes")"; label="${shift%%=*}"
  rows+=(--row "$label:" --row "DE-$m teacher" "eval=$(eval_json "$name" "DE-$m" "$m")" "@shift=$label")
  for st in KD AE-KD Proxy-EnD2 KD+LatentBE +ConfODS +TDiv-SDiv; do
    rows+=(--row "$st" "eval=$(eval_json "$name" "$st" "$m")" "@shift=$label")
  done
done
if (( ${#rows[@]} )); then
  step "Table 4: corrupted CIFAR"
  "${TABLE[@]}" --title "$TAG Table 4: corrupted data (mean over corruptions and severities)" \
    --col "ACC=eval:shift/{shift}/mean/accuracy:pct2" --col "NLL=eval:shift/{shift}/mean/nll:f3" \
    --col "ECE=eval:shift/{shift}/mean/ece:f3" --col "cNLL=eval:shift/{shift}/mean/calibrated_nll:f3" \
    --col "cECE=eval:shift/{shift}/mean/calibrated_ece:f3" "${rows[@]}" --out "$T/table4.md"
fi

# Table 5: runtime of the RUNTIME_SETTING students (all on this machine's device)
for s in "${SETTINGS[@]}"; do
  read_setting "$s"
  [[ "$name" == "$RUNTIME_SETTING" ]] || continue
  m="$(teacher_size "$sizes")"
  runs=("DE-$m teacher=$(run_dir "$name" ensemble)@$m"); rows=()
  for st in "DE-$m" KD KD+LatentBE +TDiv-SDiv KD+BE BE+TDiv-SDiv; do
    if [[ "$st" == DE-* ]]; then lab="DE-$m teacher"; dir="$(run_dir "$name" ensemble)"
    else lab="$st"; dir="$(run_dir "$name" "de$m/$(slug "$st")")"; runs+=("$st=$dir"); fi
    rows+=(--row "$lab" "eval=$(eval_json "$name" "$st" "$m")" "train=$dir/metrics.json" "rt=$T/runtime_$name.json" "@l=$lab")
  done
  step "Table 5: inference time of $name (DE-$m students) on this machine"
  rt_args=(); for r in "${runs[@]}"; do rt_args+=(--run "$r"); done
  python "$(dirname "$0")/../lib/inference_runtime.py" "${rt_args[@]}" --batch-size "${RUNTIME_BATCH:-128}" \
    --out "$T/runtime_$name.json" $([[ "$SMOKE" == 1 ]] && echo --iters 2 --repeats 1)
  "${TABLE[@]}" --title "$TAG Table 5: $name, training (hours, one run: all members of the teacher) and inference (ms/img)" \
    --col "ACC=eval:test/accuracy:pct2" --col "NLL=eval:test/nll:f3" --col "Training (hrs)=train:train_seconds_this_session:hours" \
    --col "Inference (ms/img)=rt:runs/{l}/batched_ms_per_img:f4" --col "Inference, M passes (ms/img)=rt:runs/{l}/multipass_ms_per_img:f4" \
    "${rows[@]}" --out "$T/table5.md"
done
