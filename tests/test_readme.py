"""The README's Python example runs and the two set-up commands are what CI and the Makefile use."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "tensor(" in res.stdout


def test_ci_runs_the_readme_test_command():
    readme = _readme()
    assert "make test" in readme and "make demo" in readme
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert re.search(r"^make test$", f.read(), flags=re.M)
    with open(os.path.join(ROOT, "Makefile")) as f:
        makefile = f.read()
    assert re.search(r"^test: ", makefile, flags=re.M) and re.search(r"^demo: ", makefile, flags=re.M)
