"""In-process checks of the training glue with real fairseq objects: bf16 teachers, extreme logits, padding."""

import pytest
import torch

from seq_helpers import MODEL_ARGS, REPO

CRITERIONS = [
    "forward_kl_mean_distillation",
    "sequence_distribution_distillation",
    "dirichlet_proxy_distillation",
    "rkl_dirichlet_proxy_distillation",
]


def _setup(data, teachers, criterion, *extra):
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [
        str(data), "--user-dir", str(REPO / "endist_seq"), "--task", "ensemble_distillation",
        "--ensemble-paths", ",".join(map(str, teachers)), "--criterion", criterion, "--cpu", *MODEL_ARGS,
        "--dropout", "0", *extra,
    ]
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, argv)
    utils.import_user_module(args)
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion_obj = task.build_criterion(cfg.criterion)
    task.load_dataset("valid")
    batches = task.get_batch_iterator(task.dataset("valid"), max_sentences=40, seed=1).next_epoch_itr(shuffle=False)
    return task, model, criterion_obj, next(batches)


def test_bf16_teachers_close_to_fp32(toy_data_bin, teacher_checkpoints):
    task32, model, _, sample = _setup(toy_data_bin, teacher_checkpoints, "rkl_dirichlet_proxy_distillation")
    task16, _, _, _ = _setup(toy_data_bin, teacher_checkpoints, "rkl_dirichlet_proxy_distillation", "--bf16-ensemble")
    mask = sample["target"].ne(task32.target_dictionary.pad())
    lp32 = task32.teachers.log_probs(sample["net_input"], mask)
    lp16 = task16.teachers.to(torch.device("cpu")).log_probs(sample["net_input"], mask)
    assert task16.teachers.models[0].encoder.embed_tokens.weight.dtype == torch.bfloat16
    assert lp32.shape == (int(mask.sum()), len(teacher_checkpoints), len(task32.target_dictionary))
    assert lp16.dtype == torch.float32 and torch.isfinite(lp16).all()
    # same predictions up to bf16 rounding of the weights/activations
    assert (lp16.exp() - lp32.exp()).abs().max() < 0.05
    assert torch.allclose(lp32.logsumexp(-1), torch.zeros(()), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_give_finite_loss_and_gradients(toy_data_bin, teacher_checkpoints, dtype):
    task, model, _, sample = _setup(toy_data_bin, teacher_checkpoints, "rkl_dirichlet_proxy_distillation")
    with torch.no_grad():  # logits of size ~1e3-1e4
        model.decoder.output_projection.weight.mul_(300.0)
    model = model.to(dtype)
    from fairseq import criterions

    for name in CRITERIONS:
        # each criterion with its default options (the task's teachers are already loaded)
        crit = criterions.CRITERION_REGISTRY[name](criterions.CRITERION_DATACLASS_REGISTRY[name](sentence_avg=False), task)
        model.zero_grad()
        task.attach_ensemble(sample, model, temperature=2.0)
        loss, sample_size, log = crit(model, sample)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert torch.isfinite(loss).all(), name
        assert grads and all(torch.isfinite(g).all() for g in grads), name
        assert sample_size == int(sample["target"].ne(task.target_dictionary.pad()).sum())
        assert all(torch.isfinite(torch.as_tensor(log[k], dtype=torch.float64)) for k in ("alpha0", "beta0", "nll_loss"))


def test_padding_contributes_nothing(toy_data_bin, teacher_checkpoints):
    """Extra padding columns (a longer max length) leave loss and gradients unchanged."""
    task, model, crit, sample = _setup(toy_data_bin, teacher_checkpoints, "rkl_dirichlet_proxy_distillation")
    pad = task.target_dictionary.pad()

    def loss_and_grad(s):
        model.zero_grad()
        task.attach_ensemble(s, model, temperature=1.0)
        loss, _, _ = crit(model, s)
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    base_loss, base_grad = loss_and_grad(dict(sample, net_input=dict(sample["net_input"])))
    padded = dict(sample)
    extra = 3
    padded["target"] = torch.nn.functional.pad(sample["target"], (0, extra), value=pad)
    prev = sample["net_input"]["prev_output_tokens"]
    padded["net_input"] = dict(sample["net_input"], prev_output_tokens=torch.nn.functional.pad(prev, (0, extra), value=pad))
    padded_loss, padded_grad = loss_and_grad(padded)
    assert torch.allclose(base_loss, padded_loss, rtol=1e-5)
    # equal up to float32 summation order (a leaking padding position would change them at O(1))
    assert (base_grad - padded_grad).norm() <= 1e-5 * base_grad.norm(), ((base_grad - padded_grad).norm(), base_grad.norm())
    assert (base_grad - padded_grad).abs().max() <= 1e-5 * base_grad.abs().max()
