#!/usr/bin/env bash
# `make demo`: runs every demo part scripts/demo/NN_*.sh in order.
#   DEMO_OUT=dir    where tables and PNGs go (default: demo_output)
#   DEMO_SMOKE=1    tiny settings (used by the test suite to keep the demo from rotting)
#   DEMO_ONLY=NN    run only the parts whose number starts with NN (e.g. DEMO_ONLY=1 or 40)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export DEMO_OUT="${DEMO_OUT:-demo_output}"
export DEMO_SMOKE="${DEMO_SMOKE:-0}"
mkdir -p "$DEMO_OUT"
start=$(date +%s)
for part in "$here"/demo/[0-9][0-9]_*.sh; do
  name="$(basename "$part")"
  if [[ -n "${DEMO_ONLY:-}" && "$name" != "${DEMO_ONLY}"* ]]; then continue; fi
  echo
  echo "=================== ${name%.sh} ==================="
  t0=$(date +%s)
  bash "$part"
  echo "(${name%.sh}: $(( $(date +%s) - t0 )) s)"
done
echo
echo "demo finished in $(( $(date +%s) - start )) s; outputs in $DEMO_OUT/"
