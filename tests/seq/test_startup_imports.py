"""Start-up imports (issue 16): the file-only seq tools import no torch/fairseq/sklearn/matplotlib,
and the plugin still registers itself with fairseq (tasks, criterions, checkpoint allow-list) once
fairseq is imported after it. Checked on ``sys.modules`` in fresh interpreters — not a timing test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "fairseq", "sklearn", "matplotlib", "scipy.stats")


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module", ["endist_seq.eval_cli", "endist_seq.ood"])
def test_help_imports_nothing_heavy(module: str) -> None:
    code = (
        "import contextlib, io, json, sys\n"
        f"from {module} import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        rc = main(['--help'])\n"
        "    except SystemExit as e:\n"
        "        rc = e.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'usage': out.getvalue(), 'heavy': heavy}))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] in (0, None)
    assert "usage:" in result["usage"]
    assert result["heavy"] == [], f"{module} --help imported {result['heavy']}"


def test_plugin_registers_when_fairseq_is_imported_after_it() -> None:
    code = (
        "import argparse, json, sys\n"
        "import endist_seq\n"
        "from endist_seq.errors import endist_excepthook\n"
        "before = [m for m in ('torch', 'fairseq') if m in sys.modules]\n"
        "from fairseq.tasks import TASK_REGISTRY\n"
        "from fairseq.criterions import CRITERION_REGISTRY\n"
        "import torch\n"
        "print(json.dumps({'before': before,\n"
        "    'task': 'translation_uncertainty' in TASK_REGISTRY,\n"
        "    'criterion': 'dirichlet_proxy_distillation' in CRITERION_REGISTRY,\n"
        "    'namespace_allowed': argparse.Namespace in torch.serialization.get_safe_globals(),\n"
        "    'excepthook': sys.excepthook is endist_excepthook}))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {
        "before": [],
        "task": True,
        "criterion": True,
        "namespace_allowed": True,
        "excepthook": True,
    }


#: modules whose own ``import torch``/``import fairseq`` fired the registration while they were half-initialised (the
#: registration imports the tasks, which import them): as a script's first import they raised ImportError
FIRST_IMPORTS = ("endist_seq.generation.scorer", "endist_seq.generation.output", "endist_seq.generation.search_record",
                 "endist_seq.generation.sequence_generator", "endist_seq.safe_globals", "endist_seq.teachers")


def test_any_module_as_the_first_import_registers_once_it_is_imported() -> None:
    """Each module above imported first in a fresh interpreter: the import succeeds and, right after it (nothing else
    imported), the tasks, criterions and checkpoint allow-list are registered and the import hook is gone."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    code = (
        "import json, sys, argparse\n"
        "import {module}\n"
        "import endist_seq\n"
        "tasks, criterions, torch = sys.modules['fairseq.tasks'], sys.modules['fairseq.criterions'], sys.modules['torch']\n"
        "print(json.dumps({{'registered': endist_seq._REGISTERED,\n"
        "    'task': 'translation_uncertainty' in tasks.TASK_REGISTRY,\n"
        "    'criterion': 'dirichlet_proxy_distillation' in criterions.CRITERION_REGISTRY,\n"
        "    'namespace_allowed': argparse.Namespace in torch.serialization.get_safe_globals(),\n"
        "    'hook_left': any(type(f).__name__ == '_RegisterAfterImport' for f in sys.meta_path)}}))\n"
    )
    procs = {m: subprocess.Popen([sys.executable, "-W", "ignore", "-c", code.format(module=m)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for m in FIRST_IMPORTS}
    for module, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"import {module} first: {err[-2000:]}"
        assert json.loads(out.strip().splitlines()[-1]) == {
            "registered": True, "task": True, "criterion": True, "namespace_allowed": True, "hook_left": False}, module
