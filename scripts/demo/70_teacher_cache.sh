#!/usr/bin/env bash
# Part 70: students from the top-k teacher cache vs from every member's outputs (issue 15), digits.
set -euo pipefail
python "$(dirname "$0")/teacher_cache_digits.py" --out "${DEMO_OUT:-demo_output}/teacher_cache" \
  $([[ "${DEMO_SMOKE:-0}" == 1 ]] && echo --smoke)
