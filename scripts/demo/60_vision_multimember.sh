#!/usr/bin/env bash
# Part 60: multi-member students on digits — individual, ensemble, EnD, EnD², Proxy-EnD², AE-KD, Hydra,
# BatchEnsemble, LatentBE (+TDiv−SDiv): accuracy, NLL, ECE, OOD ROC-AUC (issue #6). ~4 min on 2 cores.
set -euo pipefail
python "$(dirname "$0")/multimember_digits.py" --out "${DEMO_OUT:-demo_output}/vision_multimember" \
  $([[ "${DEMO_SMOKE:-0}" == 1 ]] && echo --smoke)
