#!/usr/bin/env bash
# [BE] Tables 1, 2 end to end: bash scripts/batchensemble_distill/run_all.sh [--smoke]
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
run_steps "$(dirname "$0")" "$@"
