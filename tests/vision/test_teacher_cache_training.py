"""``distill.teacher_mode=topk_cache`` in training (issue 15, vision): exact against ``cached`` when k = K, the cache is
memory-mapped and reused without a teacher, stale caches and unsupported methods are refused in one line, and a
digits EnD² student trains and evaluates from a top-3 cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import endist_vision.topk_cache as topk_cache
import endist_vision.trainer as trainer
from endist_vision.config import build_config
from endist_vision.teacher_cache_store import TeacherCache
from vision_helpers import FAST, ok, read_eval, run_cli

SPIRAL_MODEL = "model.kwargs={hidden: 32, depth: 2, activation: tanh}"
# settings where the cache is exact at k = K (shared.teacher_cache): EnD and Proxy at T = 1, EnD² unsmoothed at a grid T
EXACT = {
    "end": ["method_args.temperature=1.0"],
    "end2": ["method_args.smoothing=0.0", "method_args.initial_temperature=2.0", "method_args.hold_frac=1.0",
             "method_args.decay_frac=0.0"],
    "proxy_end2": [],
}


def _train(method: str, teacher: Path, out: Path, *extra: str) -> list[float]:
    cfg = build_config(f"spirals/{method}", [*FAST, "train.log_every=1", "train.max_steps=6", "train.device=cpu",
                                             f"distill.teacher={teacher}", SPIRAL_MODEL, *EXACT[method], *extra])
    return [h["loss"] for h in trainer.train(cfg, out)["history"]]


@pytest.mark.parametrize("method", sorted(EXACT))
def test_topk_cache_at_k_equal_K_matches_cached(method: str, spirals_teacher: Path, tmp_path: Path) -> None:
    cached = _train(method, spirals_teacher, tmp_path / "cached", "distill.teacher_mode=cached")
    topk = _train(method, spirals_teacher, tmp_path / "topk", "distill.teacher_mode=topk_cache", "distill.topk=3")
    assert len(cached) == len(topk) == 6
    np.testing.assert_allclose(topk, cached, rtol=1e-6, atol=1e-6)
    # and the cache is not a no-op: top-1 of 3 classes changes the targets, hence the losses
    top1 = _train(method, spirals_teacher, tmp_path / "top1", "distill.teacher_mode=topk_cache", "distill.topk=1")
    assert np.abs(np.array(top1) - np.array(cached)).max() > 1e-4


def test_cache_is_memory_mapped_and_reused_without_teacher(spirals_teacher: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    cache = tmp_path / "shared_cache"
    seen: list[TeacherCache] = []
    real_batch_record = topk_cache.batch_record

    def spy(c, idx, device):  # every batch's targets come from the memory map, a batch at a time
        seen.append(c)
        rec = real_batch_record(c, idx, device)
        assert rec.record.index.shape[0] == len(idx)
        return rec

    monkeypatch.setattr(topk_cache, "batch_record", spy)
    _train("end", spirals_teacher, tmp_path / "a", "distill.teacher_mode=topk_cache", "distill.topk=2", f"distill.teacher_cache={cache}")
    assert "teacher cache: built" in capsys.readouterr().err
    assert seen and all(isinstance(a, np.memmap) for c in seen for _, _, arrs in c.shards for a in arrs.values())
    before = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in cache.iterdir()}

    def no_teacher(*a, **k):
        raise AssertionError("a reused cache must not load the teachers")

    monkeypatch.setattr(trainer, "load_teacher", no_teacher)
    # another method at the same temperature reuses it: same files, untouched, and no teacher loaded
    _train("proxy_end2", spirals_teacher, tmp_path / "b", "distill.teacher_mode=topk_cache", "distill.topk=2",
           f"distill.teacher_cache={cache}")
    assert f"teacher cache: reused {cache}" in capsys.readouterr().err
    assert {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in cache.iterdir()} == before
    assert not any(p.name.endswith(".partial.tmp") for p in tmp_path.iterdir())


def test_stale_cache_refused_in_one_line(spirals_teacher: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    common = [*FAST, "train.max_steps=2", SPIRAL_MODEL, "distill.teacher_mode=topk_cache", f"distill.teacher_cache={cache}"]

    def train(out: str, *extra: str):
        return run_cli("train", "--config", "spirals/end", "--out", tmp_path / out, *common, *extra)

    assert train("a", f"distill.teacher={spirals_teacher}", "distill.topk=2")[0] == 0
    # other teachers: the same run with one weight changed
    other = tmp_path / "other_teacher"
    shutil.copytree(spirals_teacher, other)
    ck = torch.load(other / "checkpoints" / "final.pt", weights_only=True)
    name = next(k for k, v in ck["model"].items() if v.is_floating_point())
    ck["model"][name] = ck["model"][name] + 1e-3
    torch.save(ck, other / "checkpoints" / "final.pt")
    code, _, err = train("b", f"distill.teacher={other}", "distill.topk=2")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"distill.teacher_cache {cache}: stale teacher cache, built for other teachers (distill.teacher[0] weights sha256" in err
    # other data: the transfer set gains the AUX ring
    code, _, err = train("c", f"distill.teacher={spirals_teacher}", "distill.topk=2", "data.aux=spirals_ring")
    assert code == 2 and err.count("\n") == 1 and "built for other data (data name, size, index_hash differ" in err
    code, _, err = train("d", f"distill.teacher={spirals_teacher}", "distill.topk=1")
    assert code == 2 and "built for other topk (cache 2, now 1)" in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


@pytest.mark.parametrize("args, message", [
    (["method=aekd", "method_args.perturbation=gaussian"],
     "method aekd with method_args.perturbation=gaussian needs the teacher online on the perturbed batch"),
    (["method=aekd"], "method aekd needs every teacher member's outputs"),
    (["method=hydra"], "method hydra needs every teacher member's outputs"),
])
def test_topk_cache_refused_for_methods_that_need_members_or_online(args: list[str], message: str, spirals_teacher: Path,
                                                                    tmp_path: Path) -> None:
    code, _, err = run_cli("train", "--config", "spirals/end", "--out", tmp_path / "r", *FAST, SPIRAL_MODEL,
                           "method_args={}", *args, f"distill.teacher={spirals_teacher}", "distill.teacher_mode=topk_cache")
    assert code == 2 and err.count("\n") == 1, err
    assert f"distill.teacher_mode=topk_cache: {message}" in err
    assert not (tmp_path / "r").exists()


def test_digits_end2_from_top3_cache_trains_and_evaluates(digits_teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "end2"
    ok("train", "--config", "digits/end2", "--out", run, *FAST, "train.max_steps=150", f"distill.teacher={digits_teacher}",
       "model.kwargs={width: 8, hidden: 32}", "method_args.initial_temperature=2.5", "method_args.hold_frac=0.2",
       "method_args.decay_frac=0.3", "train.lr=1e-2", "distill.teacher_mode=topk_cache", "distill.topk=3")
    cache = TeacherCache.open(run / "teacher_cache", _manifest_key(run))
    assert cache.manifest["key"]["topk"] == 3 and cache.members == 4 and cache.manifest["fields"]["index"]["shape"] == [3]
    ok("evaluate", "--run", run)
    res = read_eval(run / "eval")
    assert res["kind"] == "dirichlet" and res["test"]["accuracy"] > 0.5  # chance is 0.1
    assert all(0.0 <= res["ood"][o]["knowledge_roc_auc"] <= 1.0 for o in res["ood"])


def _manifest_key(run: Path) -> dict:
    import json

    return json.loads((run / "teacher_cache" / "manifest.json").read_text())["key"]


def test_config_keys_and_proxy_imagenet_recipes_default_to_the_cache() -> None:
    from endist_vision.errors import ConfigError

    for m in ("end", "proxy_end2"):  # [Proxy] ImageNet: the cache by default, the teachers per batch one flag away
        cfg = build_config(f"proxy/imagenet/resnet50/{m}", [])
        assert (cfg["distill"]["teacher_mode"], cfg["distill"]["topk"]) == ("topk_cache", 64)
        assert build_config(f"proxy/imagenet/resnet50/{m}", ["distill.teacher_mode=online"])["distill"]["teacher_mode"] == "online"
    with pytest.raises(ConfigError, match=re.escape("distill.teacher_mode must be cached|online|topk_cache, got 'topk'")):
        build_config("spirals/end", ["distill.teacher_mode=topk"])
    with pytest.raises(ConfigError, match="distill.topk must be >= 1, got 0"):
        build_config("spirals/end", ["distill.topk=0"])
    with pytest.raises(ConfigError, match="distill.topk must be an integer"):
        build_config("spirals/end", ["distill.topk=2.5"])
