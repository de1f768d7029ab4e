#!/usr/bin/env bash
# Step 4: Acc., ECE, NLL (and calibrated NLL/ECE, Brier, PRR) of the teacher and the students on the test set and
# on CIFAR-10-C / CIFAR-100-C (--shift: the corrupted columns c-Acc., c-ECE, c-NLL, means over corruptions × severities).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
de_evaluate
