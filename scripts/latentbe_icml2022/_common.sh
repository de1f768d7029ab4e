# Sourced by every step after scripts/lib/recipe_common.sh: the settings of [LatentBE] Tables 2, 3 and 6.
# SETTINGS entries: NAME|CONFIG|DATA_SUBDIR|ENSEMBLE_MEMBERS|TEACHER_SIZES (space separated)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ "$SMOKE" == 1 ]]; then
  # tiny embedded stand-in: scikit-learn digits, small CNN, 2 members, 2 optimiser steps per run
  SETTINGS=("digits|latentbe_cifar10_wrn28x1|-|2|2")
  EXTRA=(data.name=digits data.root=null data.val_size=150 data.augment=none data.ood=[digits_noise]
         model.name=digits_cnn model.kwargs.width=4 model.kwargs.hidden=16 model.kwargs.stem=null
         train.max_steps=2 train.batch_size=32 train.amp=none train.num_workers=0 train.progress=false)
else
  SETTINGS=("c10_wrn28x1|latentbe_cifar10_wrn28x1|cifar-10-batches-py|8|4 8"
            "c100_wrn28x4|latentbe_cifar100_wrn28x4|cifar-100-python|4|2 4"
            "tim_r18|latentbe_tinyimagenet_resnet18|tiny-imagenet-200|4|4"
            "tim_wrn28x4|latentbe_tinyimagenet_wrn28x4|tiny-imagenet-200|4|4")
  EXTRA=()
  [[ -n "${SETTINGS_ONLY:-}" ]] && mapfile -t SETTINGS < <(printf '%s\n' "${SETTINGS[@]}" | grep -E "^(${SETTINGS_ONLY// /|})\|")
fi
# Student rows of Tables 2/3/6: LABEL|overrides (temperature and perturbation step: method defaults)
STUDENTS=("KD|method=end"
          "AE-KD|method=aekd"
          "Proxy-EnD2|method=proxy_end2"
          "KD+LatentBE|method=latentbe"
          "+ConfODS|method=latentbe method_args.perturbation=confods distill.teacher_mode=online"
          "+TDiv-SDiv|method=latentbe method_args.perturbation=tdiv_sdiv distill.teacher_mode=online"
          "KD+BE|method=batchensemble method_args.objective=head"
          "BE+ConfODS|method=batchensemble method_args.objective=head method_args.perturbation=confods distill.teacher_mode=online"
          "BE+TDiv-SDiv|method=batchensemble method_args.objective=head method_args.perturbation=tdiv_sdiv distill.teacher_mode=online")

# data_args DATA_SUBDIR: the data.root override for full mode
data_args() { [[ "$SMOKE" == 1 ]] || echo "data.root=$DATA_DIR/$1"; }
run_dir() { echo "$OUT_DIR/$1/$2"; }            # run_dir SETTING RUN
slug() { echo "$1" | tr -c 'A-Za-z0-9\n' '_'; }  # label -> directory name

# vision SUBCOMMAND ARGS...: `endist-vision` (train through vision_train: torchrun, ACCUMULATE, skip finished).
# In smoke mode the command is queued and `vision_flush` runs the queue in one Python process, so that
# torch is imported once per step instead of once per command (the test budget is a minute).
# run_all.sh --smoke exports VISION_DEFER=1 and one VISION_QUEUE for all steps and runs it once at the end.
VISION_QUEUE="${VISION_QUEUE:-$OUT_DIR/.vision_queue.$$}"
# vision / vision_flush: see scripts/lib/recipe_common.sh
