#!/usr/bin/env bash
# Step 2: the deep-ensemble teachers (DE-M, independent seeds/shuffles), one per setting.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
de_train_ensembles
