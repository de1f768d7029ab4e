"""Bad input → clear error naming the flag/file, non-zero exit, and no overwritten outputs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from vision_helpers import FAST, bin_path, ok, run_cli


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def test_missing_dataset_dir_console_script(tmp_path: Path) -> None:
    """The real console script: exit status 3, message names data.root and the path; nothing created."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    missing = tmp_path / "no_such_cifar"
    p = subprocess.run([bin_path("endist-vision"), "train", "--config", "cifar10/vgg/individual", "--out", str(tmp_path / "run"),
                        f"data.root={missing}"], env=env, capture_output=True, text=True)
    assert p.returncode == 3
    assert "data.root" in p.stderr and str(missing) in p.stderr and "does not exist" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "run").exists()


def test_malformed_cifar_folder_and_existing_run_untouched(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok("train", "--config", "digits/individual", "--out", run, *FAST, "train.max_steps=3", "model.kwargs={width: 4, hidden: 8}")
    before = _snapshot(run)
    (tmp_path / "cifar").mkdir()
    (tmp_path / "cifar" / "data_batch_1").write_bytes(b"not a pickle")
    code, _, err = run_cli("train", "--config", "cifar10/vgg/individual", "--out", run, f"data.root={tmp_path / 'cifar'}")
    assert code == 3 and "data_batch_1" in err and "cannot read CIFAR pickle" in err
    # a valid config into an existing run directory is refused too (no silent overwrite)
    code, _, err = run_cli("train", "--config", "digits/individual", "--out", run, *FAST, "train.max_steps=3")
    assert code == 2 and "--resume" in err
    assert _snapshot(run) == before


def test_wrong_class_count(spirals_teacher: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--config", "digits/individual", "--out", tmp_path / "a", "data.num_classes=5")
    assert code != 0 and "data.num_classes=5" in err and "10 classes" in err
    # a 3-class spiral teacher cannot teach a 10-class digits student
    code, _, err = run_cli("train", "--config", "digits/end2", "--out", tmp_path / "b", f"distill.teacher={spirals_teacher}")
    assert code != 0 and "distill.teacher" in err and "3 classes" in err and "10" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_corrupt_checkpoint(spirals_teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(spirals_teacher, run)
    ok("evaluate", "--run", run, "--out", tmp_path / "ev")
    before = _snapshot(tmp_path / "ev")
    ck = run / "checkpoints" / "final.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])  # truncated file
    code, _, err = run_cli("evaluate", "--run", run, "--out", tmp_path / "ev")
    assert code == 4 and str(ck) in err and "corrupt" in err
    assert _snapshot(tmp_path / "ev") == before
    # resuming from a corrupt last.pt fails the same way, leaving the run as it was
    (run / "checkpoints" / "last.pt").write_bytes(b"\x00garbage")
    snap = _snapshot(run)
    code, _, err = run_cli("train", "--out", run, "--resume")
    assert code == 4 and "last.pt" in err
    assert _snapshot(run) == snap


def test_unknown_config_key_and_bad_override(tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--config", "digits/individual", "--out", tmp_path / "r", "train.lrr=0.1")
    assert code == 2 and "train.lrr" in err
    code, _, err = run_cli("train", "--config", "digits/end", "--out", tmp_path / "r", "method_args.temprature=3")
    assert code == 2 and "temprature" in err
    assert not (tmp_path / "r").exists()
