"""scripts/lib helpers of the paper recipes: the paper-layout table printer (eval_table.py) and the
per-member networks that inference_runtime.py times for BatchEnsemble multi-pass inference."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "lib"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, LIB / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_eval_table_layout_vars_and_missing(tmp_path: Path) -> None:
    ev = tmp_path / "a.json"
    ev.write_text(json.dumps({"test": {"accuracy": 0.93456, "nll": -0.00001}, "shift": {"C10-C": {"mean": {"accuracy": 0.5}}},
                              "ood": {"o": {"total_roc_auc": 0.8}}}))
    out = tmp_path / "t.md"
    argv = [sys.executable, str(LIB / "eval_table.py"), "--title", "T", "--out", str(out),
            "--col", "ACC=eval:test/accuracy:pct2", "--col", "NLL=eval:test/nll:f3", "--col", "c-Acc=eval:shift/{s}/mean/accuracy:f3",
            "--col", "RMI=eval:ood/o/rmi_roc_auc:pct1", "--col", "hrs=train:t:hours",
            "--row", "C10-C:", "--row", "KD", f"eval={ev}", "@s=C10-C"]
    p = subprocess.run(argv, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = out.read_text().splitlines()
    assert lines[2] == "| Method | ACC | NLL | c-Acc | RMI | hrs |"
    assert lines[4] == "| **C10-C:** | | | | | |"
    # -0.000 printed as 0.000; a missing key (RMI) and a source the row lacks (train) print "–"
    assert lines[5] == "| KD | 93.46 | 0.000 | 0.500 | – | – |"
    p = subprocess.run(argv[:-4] + ["--row", "KD", f"eval={tmp_path / 'missing.json'}"], capture_output=True, text=True)
    assert p.returncode == 2 and "missing.json" in p.stderr
    p = subprocess.run(argv[:-8] + ["--col", "X=eval:test/accuracy:pct9", "--row", "KD", f"eval={ev}"], capture_output=True, text=True)
    assert p.returncode != 0 and "FORMAT" in p.stderr


def test_be_member_networks_reproduce_each_member() -> None:
    from endist_vision.models import create_model
    from endist_vision.models import BatchEnsembleNet
    from endist_vision.models.layers import be_layers

    rt = _load("inference_runtime")
    torch.manual_seed(0)
    base = create_model("mlp", 5, mean=[0.5], std=[0.25], in_features=12, hidden=8, depth=2)
    be = BatchEnsembleNet.from_plain(base.net, 3)
    with torch.no_grad():
        for layer in be_layers(be):
            for p in (layer.fast_r, layer.fast_s, layer.member_bias):
                if p is not None:
                    p.add_(0.3 * torch.randn_like(p))
    base.net = be
    base.eval()
    x = torch.rand(4, 12)
    parts = rt.member_networks(base)
    assert len(parts) == 3
    with torch.no_grad():
        full = base(x)                                   # [B, M, K]
        for m, part in enumerate(parts):
            torch.testing.assert_close(part(x), full[:, m], rtol=1e-5, atol=1e-5)
    assert rt.member_networks(create_model("mlp", 5, in_features=12)) is None   # a plain network: no multi-pass
