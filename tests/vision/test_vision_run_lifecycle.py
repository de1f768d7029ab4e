"""Run-directory life cycle of ``endist-vision train`` / ``evaluate`` (issues 11 and 12): step hooks instead of a
kill switch in the trainer, resume of a run that has no checkpoint yet, a NaN loss, stale temp files, the
distributed timeout, ``--out`` that cannot be written, ``--data-root`` that would be ignored, ``--no-plots``,
and knowledge uncertainty written as null (not 0 / ROC-AUC 50) for models that have none."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fault_injection import fault_env
from vision_helpers import FAST, REPO, bin_path, ok, read_eval, run_cli

from endist_vision.config import build_config
from endist_vision.trainer import StepEnd, train

TINY = [*FAST, "model.kwargs={width: 4, hidden: 8}", "train.batch_size=32"]


def _final(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "final.pt", weights_only=True)["model"]


def _one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), (words, err)


@pytest.fixture(scope="module")
def ens_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-member digits ensemble (4 steps) with an OOD set."""
    run = tmp_path_factory.mktemp("lifecycle") / "ens"
    ok("train", "--config", "digits/ensemble", "--out", run, *TINY, "method_args.members=2", "train.max_steps=4",
       "data.ood=[digits_noise]")
    return run


class _Crash(Exception):
    pass


def test_step_hooks_see_every_step_after_its_checkpoint(tmp_path: Path) -> None:
    cfg = build_config("digits/individual", [*TINY, "train.max_steps=4", "train.ckpt_every=2"])
    seen: list[tuple[int, int, int]] = []

    def hook(ev: StepEnd) -> None:
        ck = ev.run_dir / "checkpoints" / "last.pt"
        seen.append((ev.step, ev.total, torch.load(ck, weights_only=True)["step"] if ck.exists() else 0))

    train(cfg, tmp_path / "r", on_step_end=[hook])
    assert seen == [(1, 4, 0), (2, 4, 2), (3, 4, 2), (4, 4, 4)]
    # the trainer holds no fault-injection switch of its own
    src = (REPO / "endist_vision" / "trainer.py").read_text()
    assert "os._exit" not in src and "ENDIST_DEBUG" not in src


def test_resume_without_checkpoint_starts_at_step_zero_and_drops_stale_temps(tmp_path: Path) -> None:
    """A run that crashed before its first checkpoint (config.yaml only) resumes from step 0 with its stored
    config and ends with the weights of an uninterrupted run; stale temps of its own writes are removed."""
    args = [*TINY, "train.max_steps=4", "train.ckpt_every=100", "model.kwargs.dropout=0.2"]
    ok("train", "--config", "digits/individual", "--out", tmp_path / "full", *args)

    def crash(ev: StepEnd) -> None:
        if ev.step == 2:
            raise _Crash

    with pytest.raises(_Crash):
        train(build_config("digits/individual", args), tmp_path / "crashed", on_step_end=[crash])
    ck = tmp_path / "crashed" / "checkpoints"
    assert (tmp_path / "crashed" / "config.yaml").is_file() and not (ck / "last.pt").exists()
    stale = [ck / ".last.pt.k1l2.tmp", ck / ".last.rng1.pt.x9.tmp", tmp_path / "crashed" / ".metrics.json.ab.tmp"]
    foreign = ck / ".notes.txt.tmp"
    for p in [*stale, foreign]:
        p.write_bytes(b"partial")
    code, _, err = run_cli("train", "--out", tmp_path / "crashed", "--resume", "train.progress=false")
    assert code == 0, err
    assert "no checkpoint yet" in err
    a, b = _final(tmp_path / "full"), _final(tmp_path / "crashed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.exists() for p in stale) and foreign.exists()


def test_nan_loss_stops_with_one_line_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "nan"
    args = ["--config", "digits/individual", "--out", run, *TINY, "train.max_steps=6", "train.ckpt_every=1",
            "train.optimizer=sgd", "train.lr=1e30", "train.schedule=constant"]
    code, _, err = run_cli("train", *args)
    assert code == 5
    _one_line_error(err, "non-finite loss at step 2", "nan", "last.pt (step 1)")
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 1 and all(torch.isfinite(v).all() for v in last["model"].values())
    assert not (run / "checkpoints" / "final.pt").exists()
    # the checkpoint is resumable: the exact resume reaches the same step and stops the same way
    code, _, err2 = run_cli("train", "--out", run, "--resume", "train.progress=false")
    assert code == 5 and err2 == err


def test_out_that_cannot_be_written(ens_run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for out in (blocker, blocker / "run"):
        code, _, err = run_cli("train", "--config", "digits/individual", "--out", out, *TINY, "train.max_steps=2")
        assert code == 2
        _one_line_error(err, "--out", "regular file")
        code, _, err = run_cli("evaluate", "--run", ens_run, "--out", out / "ev")
        assert code == 2
        _one_line_error(err, "--out", "regular file")
    assert blocker.read_text() == "x"
    unwritable = Path("/proc/endist_vision_test_out")  # no process may create a directory under /proc
    code, _, err = run_cli("train", "--config", "digits/individual", "--out", unwritable, *TINY, "train.max_steps=2")
    assert code == 2
    _one_line_error(err, "--out", str(unwritable))
    code, _, err = run_cli("evaluate", "--run", ens_run, "--out", unwritable)
    assert code == 2
    _one_line_error(err, "--out", str(unwritable))


def test_data_root_is_refused_where_it_would_be_ignored(ens_run: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("evaluate", "--run", ens_run, "--out", tmp_path / "ev", "--data-root", tmp_path)
    assert code == 2
    _one_line_error(err, "--data-root", "digits")
    assert not (tmp_path / "ev").exists()


def test_one_member_ensemble_has_no_knowledge_uncertainty(ens_run: Path, tmp_path: Path) -> None:
    """``--members 1``: mutual information is identically 0, so its ROC-AUC would be 50; eval.json holds null and
    every table prints "–" instead, while the 2-member ensemble keeps its numbers; ``--no-plots``: no figures."""
    ok("evaluate", "--run", ens_run, "--out", tmp_path / "one", "--members", "1", "--no-plots")
    ok("evaluate", "--run", ens_run, "--out", tmp_path / "two", "--no-plots")
    assert not list((tmp_path / "one").glob("*.png")) and not list((tmp_path / "two").glob("*.png"))
    one, two = read_eval(tmp_path / "one"), read_eval(tmp_path / "two")
    o1, o2 = one["ood"]["digits_noise"], two["ood"]["digits_noise"]
    for key in ("knowledge_roc_auc", "knowledge_pr_auc", "rmi_roc_auc", "epkl_roc_auc"):
        assert o1[key] is None and 0.0 <= o2[key] <= 1.0, key
    assert one["test"]["prr_mutual_information"] is None and one["test"]["mean_uncertainty"]["rmi"] is None
    assert two["test"]["mean_uncertainty"]["mutual_information"] > 0
    out = ok("compare", f"one={tmp_path / 'one'}", f"two={tmp_path / 'two'}")
    k_row = [c.strip() for c in next(line for line in out.splitlines() if "| K.Unc |" in line).strip("|").split("|")]
    assert k_row[2] == "–" and k_row[3] == f"{100 * o2['knowledge_roc_auc']:.1f}"
    table = subprocess.run([sys.executable, str(REPO / "scripts" / "lib" / "eval_table.py"), "--title", "T",
                            "--col", "RMI=eval:ood/digits_noise/rmi_roc_auc:pct1", "--col", "MU=eval:test/mean_uncertainty/mutual_information:f4",
                            "--row", "Single", f"eval={tmp_path / 'one' / 'eval.json'}"], capture_output=True, text=True, check=True)
    assert "| Single | – | – |" in table.stdout


def test_vision_batch_passes_no_plots(ens_run: Path, tmp_path: Path) -> None:
    import shared.plots

    sys.path.insert(0, str(REPO / "scripts" / "lib"))
    try:
        import vision_batch
    finally:
        sys.path.pop(0)
    before = shared.plots.plot_rejection_curves
    queue = tmp_path / "queue"
    queue.write_text(f"evaluate --run {ens_run} --out {tmp_path / 'ev'} --ood digits_noise\n")
    env = dict(os.environ)
    os.environ.pop("SMOKE_FIGURES", None)
    try:
        assert vision_batch.run(str(queue)) == 0
    finally:
        os.environ.clear()
        os.environ.update(env)
    assert (tmp_path / "ev" / "eval.json").is_file() and not list((tmp_path / "ev").glob("*.png"))
    assert shared.plots.plot_rejection_curves is before  # nothing monkeypatched


def test_stalled_rank_ends_the_run_after_dist_timeout(tmp_path: Path) -> None:
    """Rank 1 hangs after step 1 (a test hook blocks it); rank 0 gives up after train.dist_timeout_s=2 with one
    line instead of waiting torch's default 30 minutes."""
    env = fault_env(stall=(1, 1))
    env["CUDA_VISIBLE_DEVICES"] = ""
    t0 = time.monotonic()
    p = subprocess.run([bin_path("torchrun"), "--standalone", "--nproc_per_node=2", bin_path("endist-vision"), "train",
                        "--config", "digits/individual", "--out", str(tmp_path / "ddp"), *TINY, "train.max_steps=4",
                        "train.dist_timeout_s=2"], env=env, capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - t0
    assert p.returncode != 0
    msg = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(msg) == 1 and "rank 0" in msg[0] and "train.dist_timeout_s=2" in msg[0], p.stderr[-3000:]
    assert elapsed < 120, elapsed  # torch's default would wait 1800 s
