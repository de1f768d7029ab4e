"""The README's image-classification commands, run as written (see ``tests/readme_blocks.py``).

``$DATA_DIR`` holds tiny files in the real formats (CIFAR-10 python pickles, SVHN ``test_32x32.mat``, an image folder
for LSUN). The prelude appends smoke overrides to each ``endist-vision train`` (few steps, small batch, 2 members),
and makes the README's ``torchrun`` run die like a SIGKILL after step 3 (a test hook, ``fault_plugin/sitecustomize.py``), so that the
README's next line, ``--resume``, has to continue it from the step-2 checkpoint.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from readme_blocks import block, run_block  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_injection import PLUGIN_DIR  # noqa: E402

PRELUDE = r"""
_smoke() {
  case " $* " in
    *" spirals/ensemble "*|*" spirals/end2 "*) echo "train.max_steps=30 train.progress=false";;
    *" cifar10/vgg/ensemble "*) echo "method_args.members=2 train.max_steps=2 train.batch_size=8 data.val_size=20 train.num_workers=0 train.progress=false";;
    *" cifar10/vgg/end2 "*) echo "train.max_steps=4 train.ckpt_every=2 train.log_every=1 train.batch_size=8 data.val_size=20 train.num_workers=0 train.progress=false";;
    *) echo "unknown config in: $*" >&2; return 1;;
  esac
}
endist-vision() {
  if [[ "$1" == train && " $* " != *" --resume "* ]]; then command endist-vision "$@" $(_smoke "$@"); else command endist-vision "$@"; fi
}
torchrun() {
  if PYTHONPATH="$FAULT_PLUGIN${PYTHONPATH:+:$PYTHONPATH}" ENDIST_TEST_KILL_AFTER_STEP=3 command torchrun "$@" $(_smoke "$@"); then
    echo "expected the simulated kill" >&2; return 1; fi
  echo "torchrun run killed after step 3 as planned"
}
"""


def _write_data(root: Path) -> None:
    from PIL import Image
    from scipy.io import savemat

    g = np.random.default_rng(0)
    c10 = root / "cifar-10-batches-py"
    c10.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(c10 / f, "wb") as fh:
            pickle.dump({b"data": g.integers(0, 256, (16, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in g.integers(0, 10, 16)]}, fh)
    (root / "svhn").mkdir()
    savemat(root / "svhn" / "test_32x32.mat", {"X": g.integers(0, 256, (32, 32, 3, 12), dtype=np.uint8),
                                                "y": g.integers(1, 11, (12, 1))})
    (root / "LSUN" / "crops").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(g.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "LSUN" / "crops" / f"{i}.png")


def _eval(d: Path) -> dict:
    return json.loads((d / "eval.json").read_text())


def test_readme_vision_block(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write_data(data)
    ws = tmp_path / "ws"
    ws.mkdir()
    proc = run_block(block("endist-vision train --config spirals/ensemble"), ws, PRELUDE, env={"DATA_DIR": str(data), "FAULT_PLUGIN": str(PLUGIN_DIR)},
                     timeout=1200)
    assert "killed after step 3 as planned" in proc.stdout
    runs = ws / "runs"
    assert _eval(runs / "spirals_ensemble" / "eval10")["num_members"] == 10
    end2 = _eval(runs / "spirals_end2" / "eval")
    assert end2["method"] == "end2"
    assert (ws / "report").is_dir() and list((ws / "report").glob("*.png")), "compare --maps wrote no figure"
    # the killed 2-process run was continued by --resume to its last step
    c10 = runs / "c10_end2"
    metrics = json.loads((c10 / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [1, 2, 3, 4] and metrics["total_steps"] == 4
    assert torch.load(c10 / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    assert (c10 / "checkpoints" / "final.pt").is_file()
    ev = _eval(c10 / "eval")
    text = json.dumps(ev)
    assert "svhn" in text and "LSUN" in text
