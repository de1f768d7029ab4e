"""Config values of the wrong type or NaN/Inf are one line naming the key and the expected kind, exit 2, nothing
created (issue 11 items 8 and 9: ``train.lr=fast`` / ``train.batch_size=abc`` / ``train.max_steps=abc`` were
tracebacks, ``train.lr=nan`` trained into NaN)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from vision_helpers import run_cli

from endist_vision.config import DEFAULTS, NULLABLE_KINDS, build_config, validate
from endist_vision.errors import ConfigError


@pytest.mark.parametrize("override, needle", [
    ("train.lr=fast", "train.lr must be a number (float), got 'fast'"),
    ("train.batch_size=abc", "train.batch_size must be an integer, got 'abc'"),
    ("train.max_steps=abc", "train.max_steps must be an integer, got 'abc'"),
    ("train.epochs=2.5", "train.epochs must be an integer, got 2.5"),
    ("train.progress=maybe", "train.progress must be true or false, got 'maybe'"),
    ("train.lr=nan", "train.lr must be a finite number, got nan"),
    ("train.weight_decay=.inf", "train.weight_decay must be a finite number, got inf"),
    ("data.shift_max_per_set=.nan", "data.shift_max_per_set must be an integer, got nan"),
    ("distill.teacher_members=-.inf", "distill.teacher_members must be an integer, got -inf"),
    ("data.ood=[{name: imagefolder, root: x, scale: .nan}]", "data.ood[0].scale must be a finite number, got nan"),
    ("model.kwargs={dropout: .nan}", "model.kwargs.dropout must be a finite number, got nan"),
    ("data.ood=digits_noise", "data.ood must be a list, got 'digits_noise'"),
    ("train=3", "command line: train must be a mapping, got 3"),
])
def test_bad_value_is_one_line_exit_2(tmp_path: Path, override: str, needle: str) -> None:
    code, out, err = run_cli("train", "--config", "digits/individual", "--out", tmp_path / "run", override)
    assert code == 2 and err == f"error: {needle}\n", err
    assert not (tmp_path / "run").exists()


def test_numbers_written_as_yaml_strings_and_nulls_still_work() -> None:
    cfg = build_config("digits/individual", ["train.lr=1e-3", "train.max_steps=null", "data.root=2024", "train.momentum=1"])
    assert cfg["train"]["lr"] == 1e-3 and isinstance(cfg["train"]["lr"], float)  # YAML 1.1 reads 1e-3 as a string
    assert cfg["train"]["max_steps"] is None and cfg["data"]["root"] == "2024" and cfg["train"]["momentum"] == 1.0


class _Foreign:
    """A value of no config kind (not int/float/str/bool/list/mapping)."""

    def __repr__(self) -> str:
        return "<foreign>"


def test_every_default_is_checked() -> None:
    """Each key of DEFAULTS (outside the free-form sections method_args and model.kwargs) refuses a value of no
    config kind, naming the key; a new key whose default is None needs its kind in NULLABLE_KINDS."""
    free = {("method_args",), ("model", "kwargs")}

    def leaves(d: dict, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        out = []
        for k, v in d.items():
            p = path + (k,)
            out += leaves(v, p) if isinstance(v, dict) and p not in free else ([] if p in free else [p])
        return out

    keys = leaves(DEFAULTS)
    assert len(keys) > 30 and ("train", "lr") in keys and ("data", "root") in keys
    for p in keys:
        cfg = copy.deepcopy(DEFAULTS)
        node = cfg
        for k in p[:-1]:
            node = node[k]
        node[p[-1]] = _Foreign()
        with pytest.raises(ConfigError, match=rf"^{re.escape('.'.join(p))} must be .*, got <foreign>$"):
            validate(cfg)
    assert set(NULLABLE_KINDS) <= {".".join(p) for p in keys}
