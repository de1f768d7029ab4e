#!/usr/bin/env bash
# Step 3: every student of the tables, for every teacher size (distill.teacher_members = the first M members).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
de_distill
