#!/usr/bin/env bash
# Step 1: check the data layout under DATA_DIR (see README.md); smoke mode writes digits stand-ins there.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
de_prepare
