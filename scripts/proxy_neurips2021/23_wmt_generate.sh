#!/usr/bin/env bash
# [Proxy] Tables 3-4, step 4: beam-5 decoding with uncertainty (fairseq-generate --task translation_uncertainty
# --compute-uncertainty) of Single (teacher 1), Ensemble (all teachers), EnD and EnD2 on newstest14 + 4 OOD sets,
# and EnD2 on newstest14 with --dirichlet-mean-decoding (search with alpha/alpha0 instead of softmax(z)).
source "$(dirname "$0")/../lib/recipe_common.sh"
require_data wmt17_en_de
source "$(dirname "$0")/_wmt_common.sh"
QUEUE="$WMT_OUT/.generate.$$"
rm -f "$QUEUE"
declare -A PATHS=([single]="$WMT_OUT/teachers/t1/checkpoint_last.pt" [ensemble]="$(teacher_paths :)"
                  [end]="$WMT_OUT/students/end/checkpoint_last.pt" [end2]="$WMT_OUT/students/end2/checkpoint_last.pt")
for m in single ensemble end end2; do
  for s in test test1 test2 test3 test4; do
    res="$WMT_OUT/generate/$m"
    [[ -s "$res/generate-$s.txt" ]] && continue
    args=("$BIN" --user-dir endist_seq --task translation_uncertainty --compute-uncertainty --path "${PATHS[$m]}"
          --gen-subset "$s" --beam 5 --results-path "$res" "${GEN_EXTRA[@]}")
    if [[ "$SMOKE" == 1 ]]; then
      printf '%q ' "${args[@]}" >> "$QUEUE"; echo >> "$QUEUE"
    else
      step "generate $m $s"
      (cd "$ROOT" && fairseq-generate "${args[@]}")
    fi
  done
done
# EnD2 searched with its expected distribution alpha/alpha0 as well (issue 14, item 4; compared in step 24)
res="$WMT_OUT/generate/end2_mean"
if [[ ! -s "$res/generate-test.txt" ]]; then
  args=("$BIN" --user-dir endist_seq --task translation_uncertainty --compute-uncertainty --path "${PATHS[end2]}"
        --gen-subset test --beam 5 --results-path "$res" --dirichlet-mean-decoding "${GEN_EXTRA[@]}")
  if [[ "$SMOKE" == 1 ]]; then
    printf '%q ' "${args[@]}" >> "$QUEUE"; echo >> "$QUEUE"
  else
    step "generate end2 test --dirichlet-mean-decoding"
    (cd "$ROOT" && fairseq-generate "${args[@]}")
  fi
fi
if [[ -f "$QUEUE" ]]; then
  step "generate (smoke: one process) -> $WMT_OUT/generate"
  rc=0; (cd "$ROOT" && python "$HERE/_generate_batch.py" "$QUEUE") > "$WMT_OUT/generate.log" 2>&1 || rc=$?
  rm -f "$QUEUE"
  [[ $rc == 0 ]] || { tail -n 30 "$WMT_OUT/generate.log" >&2; die "fairseq-generate failed (log: $WMT_OUT/generate.log)"; }
fi
