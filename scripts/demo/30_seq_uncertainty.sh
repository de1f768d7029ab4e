#!/usr/bin/env bash
# Part 30: sequence-level uncertainty on the toy NMT task (issue #4), [Proxy] Tables 3-4 style:
# ensemble of the teachers vs EnD student (forward_kl_mean_distillation) vs Proxy-EnD2 student
# (part 20's rkl_dirichlet_proxy_distillation student): BLEU, sequence-level PRR, OOD ROC-AUC on the
# permuted-source (test1) and unseen-vocabulary-source (test2) sets. Then (issue 14, item 13) the same models
# on test3 = test_mixed, where about half the sentences hold one noun never seen in training: knowledge
# uncertainty predicts those errors, unlike the synonym-only errors of test (scripts/demo/seq_unseen_table.py).
# Reuses part 20's $DEMO_OUT/seq_toy (builds it if missing), adds student_end/ and uncertainty/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${DEMO_OUT:-demo_output}/seq_toy"
subsets=(test test1 test2 test3)
mixed_models=(ensemble EnD Proxy-EnD2)  # models decoded on test3 (test_mixed)
if [[ "${DEMO_SMOKE:-0}" == 1 ]]; then
  out="${out}_smoke"
  export TEACHERS=2 TEACHER_UPDATES=60 STUDENT_UPDATES=40
  subsets=(test test1)
  mixed_models=(ensemble)
fi
export TEACHERS=${TEACHERS:-3} TEACHER_UPDATES=${TEACHER_UPDATES:-400} STUDENT_UPDATES=${STUDENT_UPDATES:-600}
export CRITERION=${CRITERION:-rkl_dirichlet_proxy_distillation}
mkdir -p "$out"
out="$(cd "$out" && pwd)"
bash "$here/../seq/toy_pipeline.sh" "$out" student  # no-op when part 20 already ran
cd "$root"  # --user-dir endist_seq is relative to the repository root

teachers=()
for ((i = 1; i <= TEACHERS; i++)); do teachers+=("$out/teachers/teacher$i/checkpoint_last.pt"); done
ensemble=$(IFS=:; echo "${teachers[*]}")

# --- EnD student (plain categorical student: entropy only, no knowledge uncertainty) --------------
if [[ ! -f "$out/student_end/checkpoint_last.pt" ]]; then
  mapfile -t model_args < "$root/scripts/seq/toy_model.args"
  rm -rf "$out/student_end.tmp" && mkdir -p "$out/student_end.tmp"
  if ! fairseq-train "$out/data-bin" --user-dir endist_seq --task ensemble_distillation --seed 100 \
      --ensemble-paths "$(IFS=,; echo "${teachers[*]}")" --criterion forward_kl_mean_distillation \
      --cpu --num-workers 0 --log-format simple --log-interval 50 --no-epoch-checkpoints \
      --optimizer adam --adam-betas '(0.9,0.98)' --lr 5e-3 --lr-scheduler inverse_sqrt --warmup-updates 50 \
      --batch-size 64 --dropout 0.1 "${model_args[@]}" --max-update "$STUDENT_UPDATES" \
      --save-dir "$out/student_end.tmp" > "$out/student_end.tmp/train.log" 2>&1; then
    tail -n 30 "$out/student_end.tmp/train.log" >&2
    echo "error: training the EnD student failed (log: $out/student_end.tmp/train.log)" >&2
    exit 1
  fi
  rm -rf "$out/student_end" && mv "$out/student_end.tmp" "$out/student_end"
  echo "EnD student trained: $out/student_end/checkpoint_last.pt"
fi

# --- generation with uncertainty: 3 models x (in-domain, permuted, unseen) ------------------------
declare -A paths=([ensemble]="$ensemble" [EnD]="$out/student_end/checkpoint_last.pt"
                  [Proxy-EnD2]="$out/student/checkpoint_last.pt")
gen="$out/uncertainty"
mkdir -p "$gen"
source "$here/decode_queue.sh"
queue="$gen/.queue.$$"
rm -f "$queue"
for model in ensemble EnD Proxy-EnD2; do
  model_subsets=("${subsets[@]}")
  [[ " ${mixed_models[*]} " == *" $model "* && " ${subsets[*]} " != *" test3 "* ]] && model_subsets+=(test3)
  for subset in "${model_subsets[@]}"; do
    queue_decode "$queue" "$out/data-bin" "${paths[$model]}" "$subset" "$gen/$model/$subset"
  done
done
run_decode_queue "$queue" "$gen/generate.log"
echo "example output (ensemble, first sentence of the in-domain batch):"
grep -m1 -A0 "^U-" "$gen/ensemble/test/generate-test.txt" | cut -c1-160

# --- report ----------------------------------------------------------------------------------------
args=()
for model in ensemble EnD Proxy-EnD2; do
  args+=(--model "$model" --id "$gen/$model/test/generate-test.txt"
         --ood "permuted=$gen/$model/test1/generate-test1.txt")
  [[ " ${subsets[*]} " == *" test2 "* ]] && args+=(--ood "unseen=$gen/$model/test2/generate-test2.txt")
done
endist-seq-eval --out-dir "$out/uncertainty_report" --title "Toy NMT: ensemble vs EnD vs Proxy-EnD2" "${args[@]}" \
  2> "$gen/eval.log" || { cat "$gen/eval.log" >&2; exit 1; }
echo "report: $out/uncertainty_report/seq_eval.md (+ seq_eval.json, PNGs)"

# --- knowledge uncertainty vs errors: synonym-only test vs partly-unseen test_mixed (test3) ----------
args=()
for model in "${mixed_models[@]}"; do
  args+=(--model "$model" "$gen/$model/test/generate-test.txt" "$gen/$model/test3/generate-test3.txt")
done
python "$here/seq_unseen_table.py" --labels "$out/raw/test_mixed.unseen" --out "$out/uncertainty_report/unseen.md" \
  "${args[@]}" 2> "$gen/unseen.log" || { cat "$gen/unseen.log" >&2; exit 1; }
echo "report: $out/uncertainty_report/unseen.md (+ unseen.json)"
