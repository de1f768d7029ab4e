#!/usr/bin/env bash
# Part 20: toy NMT distillation with the fairseq plugin (issue #3): toy En->De corpus -> 3 teachers
# (fairseq-train) -> Proxy-EnD2 student (rkl_dirichlet_proxy_distillation) -> one line per model with
# BLEU on the toy test set. All steps are scripts/seq/toy_pipeline.sh, which skips outputs that already
# exist, so later seq parts reuse $DEMO_OUT/seq_toy (data-bin/, teachers/, student/). ~5 min on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${DEMO_OUT:-demo_output}/seq_toy"
if [[ "${DEMO_SMOKE:-0}" == 1 ]]; then
  out="${out}_smoke"
  export TEACHERS=2 TEACHER_UPDATES=60 STUDENT_UPDATES=40
fi
export TEACHERS=${TEACHERS:-3} TEACHER_UPDATES=${TEACHER_UPDATES:-400} STUDENT_UPDATES=${STUDENT_UPDATES:-600}
export CRITERION=${CRITERION:-rkl_dirichlet_proxy_distillation}
echo "toy NMT: $TEACHERS teachers x $TEACHER_UPDATES updates, student ($CRITERION) $STUDENT_UPDATES updates -> $out"
bash "$here/../seq/toy_pipeline.sh" "$out" all
