#!/usr/bin/env bash
# Part 50: digits ID/OOD table — individual, ensemble, EnD, EnD², Proxy-EnD², EnD²+AUX (issue #5).
set -euo pipefail
python "$(dirname "$0")/vision_digits.py" --out "${DEMO_OUT:-demo_output}/vision_digits" \
  $([[ "${DEMO_SMOKE:-0}" == 1 ]] && echo --smoke)
