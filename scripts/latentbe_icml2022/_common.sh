# Sourced by every step after scripts/lib/recipe_common.sh: the settings of [LatentBE] Tables 2-7; the step
# bodies are scripts/lib/de_recipe.sh (shared with [BE]).
# SETTINGS entries: NAME|CONFIG|DATA_SUBDIR|ENSEMBLE_MEMBERS|TEACHER_SIZES|SHIFT|STUDENT_LABELS (see de_recipe.sh)
TAG="[LatentBE]"
BASELINES=1          # Base (w/o distillation) and Single KD columns (Tables 6, 7)
T7_STUDENTS="KD KD+LatentBE +TDiv-SDiv"   # the rows of Table 7 (ImageNet-1k)
if [[ "$SMOKE" == 1 ]]; then
  # digits stand-ins in the real CIFAR-10 / CIFAR-10-C / ImageNet layouts, a small MLP (CIFAR) or CNN
  # (ImageNet, 32 px), 2 members, 2 optimiser steps per run
  SETTINGS=("c10_wrn28x1|latentbe_cifar10_wrn28x1|cifar-10-batches-py|2|2|CIFAR-10-C=cifar10_c:cifar-10-c|-"
            "in_r50|latentbe_imagenet_resnet50|imagenet|2|2|-|$T7_STUDENTS")
  STANDINS=(cifar10 cifar10-c imagenet imagenet-o)
  EXTRA=(data.val_size=20 data.augment=none data.image_size=32 model.name=mlp model.kwargs.width=null
         model.kwargs.stem=null model.kwargs.zero_init_residual=null model.kwargs.in_features=3072
         model.kwargs.hidden=16 model.kwargs.depth=2 train.max_steps=2 train.batch_size=16 train.amp=none
         train.num_workers=0 train.progress=false)
  OOD=("imagenet_o=$OUT_DIR/standins/imagenet-o")
  RUNTIME_SETTING=c10_wrn28x1
else
  SETTINGS=("c10_wrn28x1|latentbe_cifar10_wrn28x1|cifar-10-batches-py|8|4 8|CIFAR-10-C=cifar10_c:CIFAR-10-C|-"
            "c100_wrn28x4|latentbe_cifar100_wrn28x4|cifar-100-python|4|2 4|CIFAR-100-C=cifar100_c:CIFAR-100-C|-"
            "tim_r18|latentbe_tinyimagenet_resnet18|tiny-imagenet-200|4|4|-|-"
            "tim_wrn28x4|latentbe_tinyimagenet_wrn28x4|tiny-imagenet-200|4|4|-|-"
            "in_r50|latentbe_imagenet_resnet50|imagenet|2|2|-|$T7_STUDENTS")
  STANDINS=()
  EXTRA=()
  OOD=("svhn=${DATA_DIR:-}/svhn")   # OOD set of [LatentBE] Figs. 5-6 (CIFAR / TinyImageNet; none for ImageNet)
  OOD_FOR="c10_wrn28x1 c100_wrn28x4 tim_r18 tim_wrn28x4"
  RUNTIME_SETTING="${RUNTIME_SETTING:-c100_wrn28x4}"   # Table 5: WRN28x4 on CIFAR-100, DE-4 students
fi
# Student rows of Tables 2/3/6/7: LABEL|overrides. (α, τ) per data set come from the setting's config
# (recipe_student_args below); perturbation step γ = 1 (‖δ‖ = √D/255, App. B.4) = the method default.
# ConfODS rows train on clean and perturbed inputs (CE on x, KD on x̃) as the Diversity-Matters reference
# code; TDiv-SDiv rows on the perturbed inputs only, as the LatentBE code (cs-giung/distill-latentbe).
STUDENTS=("KD|method=end"
          "AE-KD|method=aekd"
          "Proxy-EnD2|method=proxy_end2"
          "KD+LatentBE|method=latentbe"
          "+ConfODS|method=latentbe method_args.perturbation=confods method_args.perturbation_inputs=clean_and_perturbed distill.teacher_mode=online"
          "+TDiv-SDiv|method=latentbe method_args.perturbation=tdiv_sdiv distill.teacher_mode=online"
          "KD+BE|method=batchensemble method_args.objective=head"
          "BE+ConfODS|method=batchensemble method_args.objective=head method_args.perturbation=confods method_args.perturbation_inputs=clean_and_perturbed distill.teacher_mode=online"
          "BE+TDiv-SDiv|method=batchensemble method_args.objective=head method_args.perturbation=tdiv_sdiv distill.teacher_mode=online")
_LATENTBE_CONFIGS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../endist_vision/configs" && pwd)"
# recipe_student_args SETTING LABEL (called by de_distill): the `# kd_args:` line of the setting's config
# ([LatentBE] App. B.4 eq. 26: τ and ce_weight = 1 − α per data set) for every student but Proxy-EnD2, and the
# `# latentbe_args:` line (λ) for the LatentBE rows.
recipe_student_args() {
  local entry n c file
  for entry in "${SETTINGS[@]}"; do
    IFS='|' read -r n c _ <<<"$entry"
    [[ "$n" == "$1" ]] && file="$_LATENTBE_CONFIGS/$c.yaml"
  done
  [[ -n "${file:-}" && -f "$file" ]] || return 0
  [[ "$2" == Proxy-EnD2 ]] || sed -n 's/^# kd_args: //p' "$file"
  case "$2" in KD+LatentBE|+ConfODS|+TDiv-SDiv) sed -n 's/^# latentbe_args: //p' "$file" ;; esac
}
source "$(dirname "${BASH_SOURCE[0]}")/../lib/de_recipe.sh"
