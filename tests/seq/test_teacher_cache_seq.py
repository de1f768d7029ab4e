"""Teacher cache for sequence distillation (issue 15): endist-seq-cache and fairseq-train --teacher-cache.

On the toy data (V = 56 target types) with the 2 toy teachers, split ``valid`` (200 sentences, 4 chunks of
50): a k = V cache built by one process is the reference; a build killed mid-chunk and resumed, and a
2-process gloo build, must give the same files byte for byte; every criterion's loss and gradient from the
cache equal the on-the-fly ones on the same batch (k = V: exact, see shared.teacher_cache); mismatched
caches are refused with one line; the real fairseq-train runs from the cache with no teacher given.
"""

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch

from seq_helpers import REPO, TrainLog, check, distill_cmd, free_port, run, seq_env, setup_distillation_task

V = 56  # toy target dictionary
CHUNK = 50
FILES = ("offsets.npy", "index.npy", "log_mean.npy", "mean_log.npy", "grid.npy", "target.npy", "target_mean_log.npy",
         "manifest.json")


def _cache_cmd(data: Path, teachers: List[Path], out: Path, *extra: str) -> List[str]:
    return [sys.executable, "-m", "endist_seq.cache_cli", str(data), "--ensemble-paths", ",".join(map(str, teachers)),
            "--topk", str(V), "--out", str(out), "--subset", "valid", "--cpu", "--chunk-sentences", str(CHUNK),
            "--batch-size", "32", *extra]


def _build_in_process(cmd: List[str]) -> int:
    """``endist-seq-cache`` in this process (fairseq is imported already: no start-up cost)."""
    from endist_seq.cache_cli import main

    return main([str(c) for c in cmd[3:]])


@pytest.fixture(scope="module")
def reference_cache(tmp_path_factory, toy_data_bin, teacher_checkpoints) -> Path:
    out = tmp_path_factory.mktemp("cache_ref")
    assert _build_in_process(_cache_cmd(toy_data_bin, teacher_checkpoints, out)) == 0
    return out


def _same_files(a: Path, b: Path) -> None:
    for name in FILES:
        assert (a / "valid" / name).read_bytes() == (b / "valid" / name).read_bytes(), name
    assert not (b / "valid" / "chunks").exists() and not (b / "valid" / "build.json").exists()


def test_reference_cache_layout(reference_cache):
    import numpy as np

    m = json.loads((reference_cache / "valid" / "manifest.json").read_text())
    assert m["num_sentences"] == 200 and m["topk"] == V and m["num_classes"] == V and len(m["teachers"]) == 2
    assert all(len(t["sha256"]) == 64 for t in m["teachers"])
    offsets = np.load(reference_cache / "valid" / "offsets.npy")
    assert offsets[0] == 0 and offsets[-1] == m["num_tokens"] and np.all(np.diff(offsets) > 0)
    index = np.load(reference_cache / "valid" / "index.npy", mmap_mode="r")
    assert index.dtype == np.int32 and index.shape == (m["num_tokens"], V)
    assert np.array_equal(np.sort(index[:5], axis=1), np.tile(np.arange(V), (5, 1)))  # k = V: a permutation


def test_resume_after_kill_equals_uninterrupted_build(tmp_path, toy_data_bin, teacher_checkpoints, reference_cache, caplog):
    import logging

    from endist_seq.teacher_cache.store import SubsetCache, TeacherCacheError

    cmd = _cache_cmd(toy_data_bin, teacher_checkpoints, tmp_path)
    killed = run(cmd, ENDIST_SEQ_CACHE_FAULT="1")  # SIGKILL while the 2nd chunk's temp file is written
    assert killed.returncode == -9, killed.stderr[-2000:]
    chunks = sorted(p.name for p in (tmp_path / "valid" / "chunks").iterdir())
    assert chunks[-1] == "chunk-000000.pt" and any(n.endswith(".tmp") for n in chunks) and len(chunks) == 2
    with pytest.raises(TeacherCacheError, match="not a complete teacher cache.*interrupted"):
        SubsetCache(tmp_path / "valid")
    caplog.set_level(logging.INFO, logger="endist_seq.teacher_cache")
    assert _build_in_process(cmd) == 0
    written = [r.getMessage() for r in caplog.records if "written" in r.getMessage()]
    assert [w.split(":")[1].split("/")[0].strip() for w in written] == ["chunk 2", "chunk 3", "chunk 4"]  # 1 kept
    _same_files(reference_cache, tmp_path)


def test_two_process_gloo_build_equals_one_process(tmp_path, toy_data_bin, teacher_checkpoints, reference_cache, caplog):
    """Rank 1 in a subprocess, rank 0 in this process (one fairseq start-up less), one gloo group of 2."""
    import logging

    import torch.distributed as dist

    port = free_port()
    cmd = [lambda r: _cache_cmd(toy_data_bin, teacher_checkpoints, tmp_path, "--distributed-world-size", "2",
                                "--distributed-rank", str(r), "--distributed-init-method", f"tcp://127.0.0.1:{port}")][0]
    other = subprocess.Popen([str(c) for c in cmd(1)], cwd=REPO, env=seq_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    caplog.set_level(logging.INFO, logger="endist_seq.teacher_cache")
    try:
        assert _build_in_process(cmd(0)) == 0
    finally:
        _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err[-3000:]
    assert not dist.is_initialized()  # the in-process rank left no process group behind
    mine = [r.getMessage() for r in caplog.records if "written" in r.getMessage()]
    theirs = [line for line in err.splitlines() if "written (rank" in line]
    assert "torch.distributed gloo: rank 1 of world size 2" in err  # really a group of two, not two solo builds
    assert len(mine) == 2 and all("(rank 0 of 2)" in m for m in mine)  # chunks 1 and 3
    assert len(theirs) == 2 and all("(rank 1 of 2)" in line for line in theirs)  # chunks 2 and 4
    _same_files(reference_cache, tmp_path)


def _batch(task, size: int = 16):
    ds = task.dataset("valid")
    return ds.collater([ds[i] for i in range(size)])


@pytest.mark.parametrize(
    "criterion, temperature, extra",
    [
        ("forward_kl_mean_distillation", 1.0, []),
        ("sequence_distribution_distillation", 1.0, ["--central-smoothing", "0"]),
        ("sequence_distribution_distillation", 2.0, ["--central-smoothing", "0"]),
        ("dirichlet_proxy_distillation", 1.0, []),
        ("rkl_dirichlet_proxy_distillation", 1.0, ["--parametrization", "softplus"]),
    ],
)
def test_cached_loss_and_gradient_equal_on_the_fly(criterion, temperature, extra, toy_data_bin, teacher_checkpoints,
                                                   reference_cache):
    from endist_seq.teacher_cache.training import attach_cached

    task, cfg = setup_distillation_task(toy_data_bin, teacher_checkpoints, "--criterion", criterion, *extra)
    crit = task.build_criterion(cfg.criterion)
    task.load_dataset("valid")
    torch.manual_seed(0)
    model = task.build_model(cfg.model)
    model.eval()
    sample = _batch(task)

    def loss_and_grads():
        model.zero_grad()
        loss, _, log = crit(model, sample)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()], log

    task.attach_ensemble(sample, model, temperature)
    fly, fly_grads, fly_log = loss_and_grads()
    task.cfg.teacher_cache = str(reference_cache)
    attach_cached(task, sample, temperature, None)
    assert sample["ensemble"].log_probs is None and sample["ensemble"].record.index.shape[-1] == V
    cached, cached_grads, cached_log = loss_and_grads()
    torch.testing.assert_close(cached, fly, rtol=2e-5, atol=1e-5)
    a, b = torch.cat([g.flatten() for g in cached_grads]), torch.cat([g.flatten() for g in fly_grads])
    assert float((a - b).norm()) <= 1e-4 * float(b.norm())  # float32 rounding (teachers scored in other batches)
    torch.testing.assert_close(cached_log["teacher_nll"], fly_log["teacher_nll"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--criterion", "sequence_distribution_distillation", "--topk-loss", "5"], "--topk-loss 5 but the cache keeps k = 56"),
        (["--criterion", "sequence_distribution_distillation", "--central-smoothing", "0.01"], "--central-smoothing 0.01"),
        (["--init-temp", "20"], r"--init-temp = 20.0 is outside the cache's temperature grid \[1, 10\]"),
        (["--teachers-reversed"], "sha256 differ from --ensemble-paths"),
    ],
)
def test_mismatched_flags_are_refused(flags, message, toy_data_bin, teacher_checkpoints, reference_cache):
    from endist_seq.teacher_cache.store import TeacherCacheError

    teachers = teacher_checkpoints[::-1] if flags == ["--teachers-reversed"] else teacher_checkpoints
    flags = [] if flags == ["--teachers-reversed"] else flags
    task, cfg = setup_distillation_task(toy_data_bin, teachers, "--teacher-cache", str(reference_cache),
                                        "--train-subset", "valid", *flags)
    with pytest.raises(TeacherCacheError, match=f"--teacher-cache {reference_cache}/valid: .*{message}") as err:
        task.build_criterion(cfg.criterion)
    assert "\n" not in str(err.value)  # one line (fairseq-train prints it as "error: ..." and exits 1)


def test_other_data_and_dictionary_are_refused(tmp_path, toy_data_bin, teacher_checkpoints, reference_cache):
    from endist_seq.teacher_cache.store import SubsetCache, TeacherCacheError

    task, _ = setup_distillation_task(toy_data_bin, teacher_checkpoints)
    task.load_dataset("test")  # same size as valid (200 sentences), other sentences
    cache = SubsetCache(reference_cache / "valid")
    with pytest.raises(TeacherCacheError, match="sentence lengths differ from the cached ones"):
        cache.check_dataset(task.dataset("test"), task.source_dictionary, task.target_dictionary)
    other = tmp_path / "valid"
    other.mkdir()
    for name in FILES:
        (other / name).write_bytes((reference_cache / "valid" / name).read_bytes())
    m = json.loads((other / "manifest.json").read_text())
    m["dictionaries"]["target"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(m))
    task.load_dataset("valid")
    with pytest.raises(TeacherCacheError, match=f"{other}: stale or mismatched teacher cache: the target dictionary differs"):
        SubsetCache(other).check_dataset(task.dataset("valid"), task.source_dictionary, task.target_dictionary)


def test_fairseq_train_from_the_cache_without_teachers(tmp_path, toy_data_bin, reference_cache):
    train = [a for a in distill_cmd(toy_data_bin, tmp_path, [], "sequence_distribution_distillation", max_update=4)]
    i = train.index("--ensemble-paths")
    del train[i : i + 2]  # no teacher at all
    extra = ["--teacher-cache", str(reference_cache), "--train-subset", "valid", "--valid-subset", "valid",
             "--init-temp", "2.5", "--final-temp", "1", "--anneal-start", "1", "--anneal-end", "3"]
    log = TrainLog.parse(check(run([*train, *extra])).stdout)
    assert [int(r["num_updates"]) for r in log.train_inner] == [1, 2, 3, 4]
    assert [r["temperature"] for r in log.train_inner] == pytest.approx([2.5, 2.5, 1.75, 1.0], abs=1e-3)
    for rec in log.train_inner + log.valid:
        assert all(math.isfinite(rec[k]) for k in ("loss", "distill_loss", "teacher_nll", "beta0")), rec
    assert log.valid and (tmp_path / "checkpoint_last.pt").is_file()
