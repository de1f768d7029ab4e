"""Typed method configs (issue 12.2): ``method_args`` parsed once into each method's dataclass — unknown
keys, wrong types and NaN/Inf are one-line ConfigErrors naming the key; the run config is never written
to; ``members: null`` comes from the teacher member count the trainer passes, and the resolved value
travels in the checkpoint meta so evaluation needs no teacher."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from endist_vision.checkpoint import load_checkpoint, load_run_model
from endist_vision.cli import main
from endist_vision.errors import ConfigError
from endist_vision.methods import get_method, register_method, resolved_run_config
from endist_vision.methods.individual import Individual


def _cfg(method: str, **args: object) -> dict:
    return {"method": method, "seed": 0, "model": {"name": "mlp", "kwargs": {}}, "method_args": dict(args),
            "distill": {"teacher": "/nonexistent/teacher/run", "teacher_members": None}}


def _build(method: str, teacher_members: int | None = None, **args: object):
    return get_method(method)(_cfg(method, **args), 10, 100, teacher_members=teacher_members)


@pytest.mark.parametrize("method,key,value", [
    ("end", "temperature", float("nan")),
    ("end2", "initial_temperature", float("inf")),
    ("hydra", "phase1_frac", "nan"),
    ("proxy_end2", "temperature", "abc"),
    ("latentbe", "merge", "false"),
    ("hydra", "head_blocks", 2.5),
    ("batchensemble", "fast_lr_mult", True),
    ("ensemble", "members", "3"),
    ("proxy_end2", "estimator", "median"),
])
def test_bad_values_are_one_line_errors_naming_the_key(method: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        _build(method, teacher_members=3, **{key: value})
    msg = str(e.value)
    assert msg.startswith(f"method_args.{key} must be ") and "\n" not in msg and repr(value) in msg


def test_numbers_are_typed() -> None:
    m = _build("batchensemble", teacher_members=2, fast_weight_decay="1e-4", temperature=3, members=2)
    assert m.config.fast_weight_decay == 1e-4 and isinstance(m.config.temperature, float) and m.config.temperature == 3.0
    assert m.config.members == 2 and m.args["objective"] == "kd"


def test_unknown_key_and_variant_messages_unchanged() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['fast_init'\] for method 'latentbe'"):
        _build("latentbe", fast_init="ones")
    with pytest.raises(ConfigError, match=r"^method_args\.objective must be kd\|head, got 'mean'$"):
        _build("batchensemble", objective="mean")
    with pytest.raises(ConfigError, match=r"^method_args\.perturbation must be one of none\|gaussian\|ods\|confods\|tdiv_sdiv"):
        _build("aekd", perturbation="fgsm")


def test_members_come_from_the_passed_teacher_count_and_cfg_is_not_written() -> None:
    cfg = _cfg("hydra", members=None)
    before = copy.deepcopy(cfg)
    m = get_method("hydra")(cfg, 10, 100, teacher_members=3)  # the teacher path does not exist: never opened
    assert cfg == before
    assert m.resolved_members() == 3 and m.eval_meta()["method_args"]["members"] == 3
    with pytest.raises(ConfigError, match="method_args.members is null"):
        get_method("hydra")(cfg, 10, 100).resolved_members()


def test_aekd_cap_checked_against_the_passed_teacher_count() -> None:
    with pytest.raises(ConfigError, match="aekd_cap=0.2 is infeasible for 3 teacher members"):
        _build("aekd", teacher_members=3, aekd_cap=0.2)
    assert _build("aekd", teacher_members=5, aekd_cap=0.2).config.aekd_cap == 0.2
    assert _build("batchensemble", aekd_cap=0.2).config.aekd_cap == 0.2  # count unknown: checked at the loss


def test_resolved_run_config_prefers_the_checkpoint_meta() -> None:
    cfg = _cfg("hydra", members=None)
    out = resolved_run_config(cfg, {"method_args": {"members": 4, "head_blocks": 2}})
    assert out["method_args"] == {"members": 4, "head_blocks": 2} and cfg["method_args"] == {"members": None}
    assert resolved_run_config(cfg, {}) is cfg


def test_evaluation_rebuilds_the_student_without_its_teacher(tmp_path: Path) -> None:
    common = ["train.progress=false", "train.log_every=5", "train.batch_size=32"]
    teacher, run = tmp_path / "ens", tmp_path / "hydra"
    assert main(["train", "--config", "digits_ensemble", "--out", str(teacher), *common, "method_args.members=2",
                 "train.max_steps=3", "model.kwargs={width: 4, hidden: 8}"]) == 0
    assert main(["train", "--config", "digits_hydra", "--out", str(run), *common, f"distill.teacher={teacher}",
                 "train.max_steps=3", "model.kwargs={width: 4, hidden: 8}"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["method_args"].get("members") is None  # not written back
    assert load_checkpoint(run / "checkpoints" / "final.pt")["meta"]["method_args"]["members"] == 2
    shutil.rmtree(teacher)
    model, meta, cfg = load_run_model(run)
    assert meta["num_members"] == 2 and cfg["method_args"]["members"] == 2
    assert json.loads((run / "metrics.json").read_text())["method"] == "hydra"


@register_method("test_plugin_ce")
class _PluginCE(Individual):
    """A teacher-free plug-in method that is not one of the built-in names."""


def test_evaluate_asks_the_method_whether_it_has_a_teacher(tmp_path: Path) -> None:
    run = tmp_path / "plugin"
    assert main(["train", "--config", "digits_individual", "--out", str(run), "method=test_plugin_ce", "train.max_steps=3",
                 "train.progress=false", "train.batch_size=32", "model.kwargs={width: 4, hidden: 8}",
                 f"distill.teacher={tmp_path / 'no_such_run'}"]) == 0
    assert main(["evaluate", "--run", str(run)]) == 0  # a stale distill.teacher is ignored: needs_teacher is False
    assert json.loads((run / "eval" / "eval.json").read_text())["method"] == "test_plugin_ce"
