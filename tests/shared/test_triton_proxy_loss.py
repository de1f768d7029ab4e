"""The fused Proxy-Dirichlet Triton kernel (``shared._triton_proxy``), run on the CPU by Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before the kernels are defined, so the checks live in
``triton_interpreted.py`` and run in a fresh pytest process here: values and gradients against float64
closed forms, one-hot and ±1e4 teachers and logits, fp16/bf16 inputs, masks, temperature, the fallbacks.
Without the interpreter (every other test) the CPU never takes this path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import shared._triton_proxy as TP

HERE = Path(__file__).resolve().parent


def test_the_cpu_never_takes_the_kernel_without_the_interpreter() -> None:
    import torch

    assert os.environ.get("TRITON_INTERPRET", "0") != "1"
    assert not TP.use_triton(torch.zeros(2, 3), 1.0)


def test_triton_kernel_checks_under_the_interpreter() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::RuntimeWarning", "-rfEs",
         str(HERE / "triton_interpreted.py")],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=900,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-8000:]
    assert " passed" in out and "skipped" not in out and "failed" not in out, out[-3000:]
