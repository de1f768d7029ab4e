#!/usr/bin/env bash
# Step 2: the teacher ensembles (MEMBERS models, independent seeds and shuffles).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
train_ensemble() {
  step "$table ($name): ensemble of $MEMBERS"
  vision train --config "${cfg}_ensemble" --out "$(run_dir "$name" ensemble)" method_args.members="$MEMBERS" \
    "$(data_args "$sub")" ${ex[@]+"${ex[@]}"}
}
each_setting train_ensemble
