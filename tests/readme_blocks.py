"""The shell commands of README.md, for the tests that run them (issue #7: every README command is tested).

* Every fenced ```` ```bash ```` block of the README is run **as written** by one test (``BLOCK_TESTS`` says which),
  in a scratch directory that stands for the repository root (``endist_seq/`` and ``scripts/`` are linked into it),
  with ``bash -euo pipefail``. The only help a test gives a block:

  - its placeholders are real, tiny artefacts made by the suite's fixtures, linked under the names the README uses
    (``DATA_BIN``, ``t1.pt``, ``student/``, ``$DATA_DIR/...``); ``RENAMES`` of a test may shorten a list written for
    three teachers to the two the fixtures train;
  - a *prelude* defines shell functions named like the tools (``fairseq-train``, ``endist-vision``, ...) that call the
    real tool with the README's arguments first and the test's "smoke" arguments (few steps, CPU, tiny sizes) last,
    where argparse / fairseq / ``endist-vision`` overrides let the last value win.

* Commands quoted inline in the README's prose and tables (``scripts/...``, ``make ...``, ``python -m ...``,
  ``python scripts/....py``) are
  listed in ``INLINE_TESTS`` with the test file that runs them; ``tests/test_readme.py`` checks that every such
  command is listed and that the file named really invokes it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: first command of a README bash block -> the test that runs the block (path::function)
BLOCK_TESTS: dict[str, str] = {
    "make demo": "tests/test_readme_quickstart.py::test_make_demo_smoke",
    "fairseq-train DATA_BIN": "tests/seq/test_readme_seq.py::test_readme_distillation_block",
    "python -m endist_seq.toy_corpus": "tests/seq/test_readme_seq.py::test_readme_seq_helpers_block",
    "fairseq-generate DATA_BIN": "tests/seq/test_readme_seq.py::test_readme_generate_block",
    "python -m endist_seq.ood": "tests/seq/test_readme_seq.py::test_readme_seq_eval_block",
    "endist-vision train --config spirals/ensemble": "tests/vision/test_readme_vision.py::test_readme_vision_block",
}

#: inline command (as quoted in the README, up to its first argument) -> (file that runs it, text proving it does)
INLINE_TESTS: dict[str, tuple[str, str]] = {
    "scripts/seq/toy_pipeline.sh": ("tests/seq/seq_helpers.py", '"seq" / "toy_pipeline.sh"'),  # builds the fixtures
    "scripts/endd_iclr2020/run_all.sh": ("tests/recipes/test_recipes_endd_hydra.py", '_run("endd_iclr2020"'),
    "scripts/hydra/run_all.sh": ("tests/recipes/test_recipes_endd_hydra.py", '_run("hydra"'),
    "scripts/proxy_neurips2021/run_all_imagenet.sh": ("tests/recipes/test_recipes_proxy.py", "run_all_imagenet.sh"),
    "scripts/proxy_neurips2021/run_all_wmt.sh": ("tests/recipes/test_recipes_proxy.py", "run_all_wmt.sh"),
    "scripts/latentbe_icml2022/run_all.sh": ("tests/recipes/test_recipes_latentbe_be.py", "latentbe_icml2022"),
    "scripts/batchensemble_distill/run_all.sh": ("tests/recipes/test_recipes_latentbe_be.py", "batchensemble_distill"),
    "endist-vision train": ("tests/vision/test_readme_vision.py", '"endist-vision train --config spirals/ensemble"'),
    "torchrun --nproc_per_node": ("tests/vision/test_vision_resume_ddp.py", '"--nproc_per_node=2", bin_path("endist-vision")'),
    "fairseq-generate --compute-uncertainty": ("tests/seq/test_readme_seq.py", "generate_overhead.py"),
    "endist-seq-cache": ("tests/seq/test_teacher_cache_seq.py", '"-m", "endist_seq.cache_cli"'),
    # every recipe's smoke mode writes its stand-in data with it (01_prepare.sh), run by tests/recipes
    "python scripts/lib/standins.py": ("scripts/hydra/01_prepare.sh", 'python "$_RECIPE_LIB/standins.py"'),
    "make bench": ("tests/test_readme_quickstart.py", '"bench"]'),
    "make demo": ("tests/test_readme_quickstart.py", '"demo"]'),
    "make test": (".ci/run", "make test"),
    "make test-gpu": ("Makefile", "test-gpu:"),
}

_EXECUTABLE = re.compile(r"^(?:[A-Z_]+=\S+ )*(make|python -m|python scripts/\S+\.py|scripts/\S+\.sh|bash|endist-\S+|fairseq-\S+|torchrun|pytest)\b")


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def bash_blocks(text: str | None = None) -> list[str]:
    """The bodies of the README's ```bash fenced blocks, in order."""
    return re.findall(r"^```bash\n(.*?)^```", text if text is not None else readme_text(), flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """The block's command lines: continuation lines joined, comment lines and trailing ``# ...`` comments removed."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(line)
    return out


def block_key(block: str) -> str | None:
    """The ``BLOCK_TESTS`` key whose text starts the block's first command, if any."""
    cmds = commands(block)
    if not cmds:
        return None
    hits = [k for k in BLOCK_TESTS if cmds[0].startswith(k)]
    return max(hits, key=len) if hits else None


def block(key: str) -> str:
    """The one README bash block claimed by ``key``."""
    found = [b for b in bash_blocks() if block_key(b) == key]
    assert len(found) == 1, f"README.md has {len(found)} bash blocks starting with {key!r} (expected 1)"
    return found[0]


def inline_commands(text: str | None = None) -> list[str]:
    """Inline code spans outside fenced blocks that are commands with arguments (``make bench`` counts too)."""
    prose = re.sub(r"^```.*?^```", "", text if text is not None else readme_text(), flags=re.S | re.M)
    found = []
    for span in re.findall(r"`([^`\n]+)`", prose):
        if _EXECUTABLE.match(span) and " " in span.strip():
            found.append(span.strip())
    return found


def inline_key(command: str) -> str | None:
    """The ``INLINE_TESTS`` key a quoted command runs (environment assignments stripped)."""
    bare = re.sub(r"^(?:[A-Z_]+=\S+ )+", "", command)
    hits = [k for k in INLINE_TESTS if bare == k or bare.startswith(k + " ")]
    return max(hits, key=len) if hits else None


def run_block(body: str, cwd: Path, prelude: str = "", renames: dict[str, str] | None = None,
              env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a README block with ``bash -euo pipefail`` in ``cwd`` after ``prelude``; fail with its output if it fails."""
    if renames:
        assert any(old in body for old in renames), f"README block contains none of {list(renames)}: update the test"
    for old, new in (renames or {}).items():
        body = body.replace(old, new)
    for name in ("endist_seq", "scripts"):  # README commands run from the repository root
        if not (cwd / name).exists():
            (cwd / name).symlink_to(REPO / name)
    script = cwd / "readme_block.sh"
    script.write_text(f"{prelude}\nPS4='+ [$SECONDS s] '\nset -x\n{body}", encoding="utf-8")
    full_env = dict(os.environ)
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"})
    full_env.update(env or {})
    proc = subprocess.run(["bash", "-euo", "pipefail", str(script)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"README block failed (rc={proc.returncode}):\n{body}\n--- output ---\n"
                             f"{(proc.stdout + proc.stderr)[-8000:]}")
    return proc
