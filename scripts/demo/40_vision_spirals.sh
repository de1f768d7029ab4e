#!/usr/bin/env bash
# Part 40: [EnD2] §4 spiral experiment — Table 1 (10 and 100 members), Table 2 (+AUX), Fig. 2/3 maps (issue #5).
set -euo pipefail
python "$(dirname "$0")/vision_spirals.py" --out "${DEMO_OUT:-demo_output}/vision_spirals" \
  $([[ "${DEMO_SMOKE:-0}" == 1 ]] && echo --smoke)
