#!/usr/bin/env bash
# Step 4: ACC, NLL, ECE, cNLL/cECE, OOD (SVHN) for Base, Single KD, teachers and students; the CIFAR settings
# also on CIFAR-10-C / CIFAR-100-C (--shift: Table 4, means over all corruptions and severities).
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
de_evaluate
