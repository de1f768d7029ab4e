#!/usr/bin/env bash
# [Hydra] Tables 2 and 3 end to end: bash scripts/hydra/run_all.sh [--smoke]
source "$(dirname "$0")/../lib/recipe_common.sh"
run_steps "$(dirname "$0")" "$@"
