#!/usr/bin/env bash
# [LatentBE] Tables 2-7 end to end: bash scripts/latentbe_icml2022/run_all.sh [--smoke]
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
run_steps "$(dirname "$0")" "$@"
