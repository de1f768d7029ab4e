"""The README: its Python example runs, CI runs its test command, and every shell command in it is run by a test."""

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


def test_every_readme_bash_block_is_run_by_a_test():
    """Each ```bash block is claimed by exactly one test (tests/readme_blocks.BLOCK_TESTS), which exists."""
    import ast

    from readme_blocks import BLOCK_TESTS, bash_blocks, block_key, commands

    blocks = bash_blocks()
    assert len(blocks) >= 5
    claimed = []
    for body in blocks:
        key = block_key(body)
        assert key is not None, f"README bash block has no test (add it to tests/readme_blocks.BLOCK_TESTS):\n{body}"
        claimed.append(key)
    assert sorted(claimed) == sorted(BLOCK_TESTS), "a README block is claimed twice, or BLOCK_TESTS names a block the README no longer has"
    for key, node in BLOCK_TESTS.items():
        path, func = node.split("::")
        tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert func in names, f"{node} (runs the README block {key!r}) does not exist"
        assert key in open(os.path.join(ROOT, path), encoding="utf-8").read(), f"{path} does not select the block {key!r}"
    # every command line of every block is a real command (no pseudo-syntax such as [optional] or ...)
    for body in blocks:
        for cmd in commands(body):
            assert "..." not in cmd and not re.search(r"\s\[-", cmd), f"README command is not runnable as written: {cmd}"


def test_every_inline_readme_command_is_run_by_a_test():
    """Commands quoted in prose/tables (`scripts/...`, `make ...`) are invoked by the test file listed for them."""
    from readme_blocks import INLINE_TESTS, inline_commands, inline_key

    found = inline_commands()
    assert any("run_all" in c for c in found) and "make bench" in found
    for cmd in found:
        key = inline_key(cmd)
        assert key is not None, f"README command `{cmd}` is run by no test (add it to tests/readme_blocks.INLINE_TESTS)"
        path, needle = INLINE_TESTS[key]
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            assert needle in f.read(), f"{path} does not run `{key}` (README: `{cmd}`; looked for {needle!r})"
