# Sourced by every step after scripts/lib/recipe_common.sh: the settings of [BE] Tables 1 and 2; the step bodies
# are scripts/lib/de_recipe.sh (shared with [LatentBE]).
# SETTINGS entries: NAME|CONFIG|DATA_SUBDIR|ENSEMBLE_MEMBERS|TEACHER_SIZES|SHIFT|STUDENT_LABELS (see de_recipe.sh)
TAG="[BE]"
TEACHER_COL="DE-TEACHER"   # compare column of the DE-4 teacher, as in Tables 1/2
if [[ "$SMOKE" == 1 ]]; then
  # digits stand-ins in the real CIFAR-10 / CIFAR-10-C layouts, a small MLP, 2 members, 2 optimiser steps per run
  SETTINGS=("c10_wrn28x10|be_cifar10_wrn28x10|cifar-10-batches-py|2|2|CIFAR-10-C=cifar10_c:cifar-10-c|-")
  STANDINS=(cifar10 cifar10-c)
  EXTRA=(data.val_size=20 data.augment=none model.name=mlp model.kwargs.width=null model.kwargs.in_features=3072
         model.kwargs.hidden=16 model.kwargs.depth=2 train.max_steps=2 train.batch_size=16 train.amp=none
         train.num_workers=0 train.progress=false)
else
  SETTINGS=("c10_wrn28x10|be_cifar10_wrn28x10|cifar-10-batches-py|4|4|CIFAR-10-C=cifar10_c:CIFAR-10-C|-"
            "c100_wrn28x10|be_cifar100_wrn28x10|cifar-100-python|4|4|CIFAR-100-C=cifar100_c:CIFAR-100-C|-")
  STANDINS=()
  EXTRA=()
fi
OOD=()   # [BE] reports no OOD set; add e.g. OOD=("svhn=$DATA_DIR/svhn")
# Student rows of [BE] Tables 1/2: LABEL|overrides. BE students have one member per teacher member.
STUDENTS=("LONE-STUDENT|method=end"
          "BE-STUDENT-head|method=batchensemble method_args.objective=head"
          "BE-STUDENT-kd|method=batchensemble method_args.objective=kd")
source "$(dirname "${BASH_SOURCE[0]}")/../lib/de_recipe.sh"
