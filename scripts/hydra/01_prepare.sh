#!/usr/bin/env bash
# Step 1: check the data layout under DATA_DIR (see README.md); smoke mode writes digits stand-ins there.
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
step "prepare: data"
if [[ "$SMOKE" == 1 ]]; then
  python "$_RECIPE_LIB/standins.py" "$DATA_DIR" --only "${STANDINS[@]}" --per-class 6 >/dev/null
  echo "smoke: digits stand-ins (${STANDINS[*]}) under $DATA_DIR"
fi
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r table name cfg sub ood <<<"$s"
  require_data "$sub"
  echo "$table ($name): $DATA_DIR/$sub"
done
if [[ "$SMOKE" != 1 ]] && printf '%s\n' "${SETTINGS[@]}" | grep -q '^table3|'; then
  require_data svhn   # Table 1 / Fig. 3 OOD set: SVHN test_32x32.mat
fi
