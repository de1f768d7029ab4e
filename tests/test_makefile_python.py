"""The Makefile's choice of interpreter (issue 17.4): the supported versions agree with setup.cfg, the default is the
newest supported interpreter that runs, ``PYTHON=`` overrides it, and a venv is never reused with another Python.

Only ``make -n`` (print, do not run) and the cheap ``check-python`` target are run: nothing is installed.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
THIS = "%d.%d" % sys.version_info[:2]


def _make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    env.pop("PYTHON", None)
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def _makefile_pythons() -> list[str]:
    m = re.search(r"^PYTHONS := (.+)$", (REPO / "Makefile").read_text(encoding="utf-8"), flags=re.M)
    assert m, "Makefile has no `PYTHONS := ...` line"
    return m.group(1).split()


def test_supported_versions_agree_with_setup_cfg() -> None:
    """Makefile ``PYTHONS`` == setup.cfg classifiers == the 3.x minors that ``python_requires`` admits."""
    versions = [p.removeprefix("python") for p in _makefile_pythons()]
    assert versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))), reverse=True), "newest first"
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    classifiers = re.findall(r"Programming Language :: Python :: (3\.\d+)$", cfg["metadata"]["classifiers"], flags=re.M)
    assert sorted(classifiers) == sorted(versions)
    spec = SpecifierSet(cfg["options"]["python_requires"])
    admitted = [f"3.{minor}" for minor in range(6, 20) if f"3.{minor}.0" in spec]
    assert sorted(admitted) == sorted(versions)
    assert THIS in versions, f"the suite runs on Python {THIS}, which the Makefile does not list"


def test_python_override_is_honoured(tmp_path: Path) -> None:
    venv = tmp_path / "v"
    proc = _make("-n", "venv", "PYTHON=python3.12", f"VENV={venv}")
    assert proc.returncode == 0, proc.stderr
    assert f"test -x {venv}/bin/python || python3.12 -m venv {venv}" in proc.stdout
    assert f"{venv}/bin/python -m pip install -q --no-build-isolation -e '.[test]'" in proc.stdout


def test_default_is_the_newest_supported_interpreter_that_runs(tmp_path: Path) -> None:
    """A newer interpreter that does not run (e.g. an unselected pyenv shim) is passed over for the next one."""
    newest, second = _makefile_pythons()[:2]
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / newest).write_text("#!/bin/sh\necho 'pyenv: command not found' >&2\nexit 127\n", encoding="utf-8")
    (tools / newest).chmod(0o755)
    (tools / second).symlink_to(sys.executable)
    venv = tmp_path / "v"
    proc = _make("-n", "venv", f"VENV={venv}", path=f"{tools}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert proc.returncode == 0, proc.stderr
    assert f"|| {tools / second} -m venv {venv}" in proc.stdout


def test_check_python_accepts_the_matching_venv_and_refuses_another(tmp_path: Path) -> None:
    venv = tmp_path / "v"
    ok_new = _make("check-python", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert ok_new.returncode == 0, ok_new.stderr
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    ok_same = _make("check-python", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert ok_same.returncode == 0, ok_same.stderr
    # a venv that holds another minor version (its interpreter reports 3.10) is not reused for PYTHON=this one
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").write_text("#!/bin/sh\necho 3.10\n", encoding="utf-8")
    (venv / "bin" / "python").chmod(0o755)
    refused = _make("check-python", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert refused.returncode != 0
    assert refused.stderr.splitlines()[0] == (
        f"make: {venv} holds Python 3.10 but PYTHON={sys.executable} is {THIS}: add VENV=.venv-{THIS} (or run make clean)")
    broken = _make("check-python", f"PYTHON={tmp_path}/no-such-python", f"VENV={venv}")
    assert broken.returncode != 0
    assert broken.stderr.splitlines()[0] == f"make: PYTHON={tmp_path}/no-such-python does not run"
