#!/usr/bin/env bash
# Part 10: the shared uncertainty core on a known Dirichlet (closed forms vs a sampled ensemble).
set -euo pipefail
python "$(dirname "$0")/shared_core.py" --out "${DEMO_OUT:-demo_output}/shared_core" $([[ "${DEMO_SMOKE:-0}" == 1 ]] && echo --smoke)
