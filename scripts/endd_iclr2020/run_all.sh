#!/usr/bin/env bash
# [EnD2] Tables 1-4 and App. D ablations end to end: bash scripts/endd_iclr2020/run_all.sh [--smoke]
source "$(dirname "$0")/../lib/recipe_common.sh"
run_steps "$(dirname "$0")" "$@"
