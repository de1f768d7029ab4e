#!/usr/bin/env bash
# Part 75: toy NMT Proxy-EnD2 student distilled from the top-k teacher cache vs part 20's student distilled with
# the teachers run at every update (issue 15): same seed, data, model and schedule; only --teacher-cache CACHE
# replaces --ensemble-paths. The cache is built once by endist-seq-cache (k = 16 of the 56 target types, T = 1).
# Prints the cache's size and build time, both students' training time, and BLEU / PRR / OOD ROC-AUC from one
# endist-seq-eval report. Reuses part 20's $DEMO_OUT/seq_toy (builds it if missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${DEMO_OUT:-demo_output}/seq_toy"
subsets=(test test1 test2)
if [[ "${DEMO_SMOKE:-0}" == 1 ]]; then
  out="${out}_smoke"
  export TEACHERS=2 TEACHER_UPDATES=60 STUDENT_UPDATES=40
  subsets=(test test1)
fi
export TEACHERS=${TEACHERS:-3} TEACHER_UPDATES=${TEACHER_UPDATES:-400} STUDENT_UPDATES=${STUDENT_UPDATES:-600}
export CRITERION=${CRITERION:-rkl_dirichlet_proxy_distillation}
topk=${TOPK:-16}
mkdir -p "$out"
out="$(cd "$out" && pwd)"
bash "$here/../seq/toy_pipeline.sh" "$out" student  # no-op when part 20 already ran
cd "$root"  # --user-dir endist_seq is relative to the repository root

teachers=()
for ((i = 1; i <= TEACHERS; i++)); do teachers+=("$out/teachers/teacher$i/checkpoint_last.pt"); done
cache="$out/teacher_cache_k$topk"
t0=$(date +%s)
endist-seq-cache "$out/data-bin" --ensemble-paths "$(IFS=,; echo "${teachers[*]}")" --topk "$topk" --temperatures 1 \
  --subset train,valid --out "$cache" --cpu --batch-size 64 > "$out/teacher_cache_k$topk.log" 2>&1 \
  || { tail -n 20 "$out/teacher_cache_k$topk.log" >&2; echo "error: endist-seq-cache failed" >&2; exit 1; }
python - "$cache/train/manifest.json" "$(( $(date +%s) - t0 ))" <<'PY'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
m = json.loads(path.read_text())
size = sum(f.stat().st_size for f in path.parent.glob("*.npy"))
print(f"teacher cache (train): {m['num_tokens']} target tokens, top-{m['topk']} of V={m['num_classes']}, "
      f"{len(m['teachers'])} teachers, {size / m['num_tokens']:.0f} bytes per token on disk, train+valid built in {sys.argv[2]} s")
PY

# --- the cache student: part 20's student stage itself, with --teacher-cache in place of --ensemble-paths --------
student="$out/student_cache_k$topk"
t0=$(date +%s)
STUDENT_NAME="student_cache_k$topk" TEACHER_CACHE="$cache" bash "$here/../seq/toy_pipeline.sh" "$out" student
echo "cache student: $(( $(date +%s) - t0 )) s: $student/checkpoint_last.pt"
for s in student "student_cache_k$topk"; do  # fairseq's own training time (data loading and validation included)
  echo "$s: $(grep -o 'done training in [0-9.]* seconds' "$out/$s/train.log" | tail -n 1 || true)"
done

# --- decode both students with uncertainty, one report -------------------------------------------------------
declare -A paths=([on-the-fly]="$out/student/checkpoint_last.pt" [cache]="$student/checkpoint_last.pt")
gen="$out/uncertainty_cache_k$topk"
mkdir -p "$gen"
source "$here/decode_queue.sh"
queue="$gen/.queue.$$"
rm -f "$queue"
for model in on-the-fly cache; do
  for subset in "${subsets[@]}"; do
    queue_decode "$queue" "$out/data-bin" "${paths[$model]}" "$subset" "$gen/$model/$subset"
  done
done
run_decode_queue "$queue" "$gen/generate.log"
args=()
for model in on-the-fly cache; do
  args+=(--model "Proxy-EnD2 $model" --id "$gen/$model/test/generate-test.txt" --ood "permuted=$gen/$model/test1/generate-test1.txt")
  [[ " ${subsets[*]} " == *" test2 "* ]] && args+=(--ood "unseen=$gen/$model/test2/generate-test2.txt")
done
endist-seq-eval --out-dir "$out/uncertainty_report_cache_k$topk" \
  --title "Toy NMT: Proxy-EnD2 student from on-the-fly teachers vs from the top-$topk teacher cache" "${args[@]}" \
  2> "$gen/eval.log" || { cat "$gen/eval.log" >&2; exit 1; }
echo "report: $out/uncertainty_report_cache_k$topk/seq_eval.md"
sed -n '1,12p' "$out/uncertainty_report_cache_k$topk/seq_eval.md"
