#!/usr/bin/env bash
# Step 1: check the data layout under DATA_DIR (see README.md); smoke mode writes digits stand-ins there.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
de_prepare
[[ "$SMOKE" == 1 ]] || require_data "svhn"   # OOD set of [LatentBE] Figs. 5-6 (test_32x32.mat)
