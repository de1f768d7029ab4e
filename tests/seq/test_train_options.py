"""Distillation options of issue 14 through fairseq: --parametrization, --clip-precision,
--init/--final-xent-weight, --topk-loss (flag checks in-process; one real fairseq-train run with all of them)."""

import math

import pytest

from endist_seq.criterions._distillation_base import DistillationCriterionConfig
from endist_seq.errors import FlagError, float_fields
from seq_helpers import TrainLog, check, distill_cmd, load_checkpoint_state, run, setup_distillation_task

UPDATES = 8
OPTIONS = [
    "--parametrization", "softplus", "--clip-precision", "1000", "--topk-loss", "8",
    "--init-xent-weight", "1.0", "--final-xent-weight", "0.2", "--anneal-start", "2", "--anneal-end", "6",
    "--init-temp", "2", "--final-temp", "1",
]


def test_new_float_flags_are_checked_for_finiteness():
    assert {"init_xent_weight", "final_xent_weight", "clip_precision"} <= set(float_fields(DistillationCriterionConfig))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--clip-precision", "0"], "--clip-precision must be > 0"),
        (["--clip-precision", "nan"], "--clip-precision must be a finite number"),
        (["--init-xent-weight", "-1"], "--init-xent-weight must be >= 0"),
        (["--final-xent-weight", "inf"], "--final-xent-weight must be a finite number"),
        (["--topk-loss", "-2"], "--topk-loss must be an integer >= 0"),
        (["--topk-loss", "100000"], "--topk-loss must be below the target vocabulary size"),
        (["--criterion", "forward_kl_mean_distillation", "--topk-loss", "5"], "apply to the Dirichlet criterions"),
    ],
)
def test_bad_option_values_are_refused(toy_data_bin, teacher_checkpoints, flags, message):
    with pytest.raises(FlagError, match=message):
        task, cfg = setup_distillation_task(toy_data_bin, teacher_checkpoints, *flags)
        task.build_criterion(cfg.criterion)


def test_xent_weight_follows_the_temperature_window(toy_data_bin, teacher_checkpoints):
    task, cfg = setup_distillation_task(toy_data_bin, teacher_checkpoints, *OPTIONS)
    criterion = task.build_criterion(cfg.criterion)
    expected = {0: 1.0, 2: 1.0, 3: 0.8, 4: 0.6, 5: 0.4, 6: 0.2, 50: 0.2}  # 1 + (0.2 − 1)·(u − 2)/4
    for update, weight in expected.items():
        assert criterion.xent_weight_at(update) == pytest.approx(weight, abs=1e-12)
    assert criterion.xent_weight_at(None) == 0.2  # validation: the final weight
    assert criterion.parametrization == "softplus" and criterion.clip_precision == 1000.0 and criterion.topk == 8
    assert task.state.state_dict["endist_student"]["parametrization"] == "softplus"


def test_fairseq_train_with_all_new_options(tmp_path, toy_data_bin, teacher_checkpoints):
    extra = ["--train-subset", "valid", "--batch-size", "50", "--max-sentences-valid", "200", *OPTIONS]
    cmd = distill_cmd(toy_data_bin, tmp_path, teacher_checkpoints, "rkl_dirichlet_proxy_distillation", extra,
                      max_update=UPDATES)
    log = TrainLog.parse(check(run(cmd)).stdout)
    inner = log.train_inner
    assert [int(r["num_updates"]) for r in inner] == list(range(1, UPDATES + 1))
    for rec in inner + log.valid:
        for key in ("loss", "distill_loss", "nll_loss", "alpha0", "beta0", "xent_weight"):
            assert math.isfinite(rec[key]), (key, rec)
    # update u+1 uses the weight at u completed updates: 1.0 up to u = 2, then linear to 0.2 at u = 6
    weights = [r["xent_weight"] for r in inner]
    assert weights == pytest.approx([1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2], abs=1e-4)
    assert all(r["xent_weight"] == pytest.approx(0.2) for r in log.valid)
    state = load_checkpoint_state(tmp_path / "checkpoint_last.pt")
    meta = state["task_state"]["endist_student"]
    assert meta["parametrization"] == "softplus" and meta["dirichlet"] is True
    assert state["cfg"]["criterion"]["topk_loss"] == 8 and state["cfg"]["criterion"]["clip_precision"] == 1000.0

    # fairseq-generate's side reads the recorded parametrization: the search (--dirichlet-mean-decoding)
    # and the uncertainty scorer build α = softplus(z) + offset
    import torch
    from fairseq import checkpoint_utils, options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    path = tmp_path / "checkpoint_last.pt"
    parser = options.get_generation_parser(default_task="translation_uncertainty")
    args = options.parse_args_and_arch(parser, [str(toy_data_bin), "--user-dir", "endist_seq", "--task",
                                                "translation_uncertainty", "--path", str(path), "--cpu",
                                                "--compute-uncertainty", "--dirichlet-mean-decoding"])
    gen_cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(gen_cfg.task)
    (model,), _ = checkpoint_utils.load_model_ensemble([str(path)], task=task)
    generator = task.build_generator([model.eval()], gen_cfg.generation)
    assert generator.scorer.parametrization == "softplus"
    z = torch.randn(2, 3, len(task.target_dictionary), dtype=torch.float64) * 3
    alphas = torch.nn.functional.softplus(z) + 1.0  # the recorded model offset (1 for the Proxy criterions)
    expected = (alphas / alphas.sum(-1, keepdim=True)).log()
    got = generator.search_models[0].get_normalized_probs((z, None), log_probs=True)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
