# Two commands on a fresh machine with Python 3.11, 3.12 or 3.13:  `make demo`  and  `make test`.
# Both create .venv on first use; nothing else needs to be installed by hand.
SHELL := /bin/bash
# The interpreters endist supports, newest first (setup.cfg's python_requires and classifiers say the same;
# tests/test_makefile_python.py checks that they agree).
PYTHONS := python3.13 python3.12 python3.11
# PYTHON: the newest of them that runs here (a pyenv shim of a version that is not selected does not run),
# else python3. Override: `make test PYTHON=python3.12` (and VENV=... to keep another venv beside .venv).
# (Looked up once, and only by a recipe that needs it: a shim takes a while to answer.)
ifeq ($(origin PYTHON),undefined)
PYTHON = $(eval PYTHON := $(shell for p in $(PYTHONS); do $$p -c '' >/dev/null 2>&1 && { command -v $$p; exit; }; \
  done; command -v python3))$(PYTHON)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.endist-installed
FAIRSEQ := fairseq-fixed==0.12.3.1
# Threads per process: tests run two pytest workers on a 2-core machine.
TEST_WORKERS ?= 2
PYVER := import sys; print("%d.%d" % sys.version_info[:2])

.PHONY: demo test venv clean bench check-python

venv: $(STAMP)

# An interpreter given on the command line (or in the environment) must be the one VENV holds: a venv is never
# silently reused with another Python, nor rebuilt over one.
check-python:
	@want=$$($(PYTHON) -c '$(PYVER)' 2>/dev/null) || { echo "make: PYTHON=$(PYTHON) does not run" >&2; exit 2; }; \
	have=$$(test -x $(BIN)/python && $(BIN)/python -c '$(PYVER)'); \
	if [[ -n "$$have" && "$$have" != "$$want" && "$(origin PYTHON)" != file ]]; then \
	  echo "make: $(VENV) holds Python $$have but PYTHON=$(PYTHON) is $$want: add VENV=.venv-$$want (or run make clean)" >&2; \
	  exit 2; fi

$(STAMP): setup.cfg pyproject.toml Makefile | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1 "numpy>=1.26" cython
	@# fairseq-fixed: no deps (its torchaudio pin has no torch-2.14 build), built from source against our torch
	@# (the registry's cp312 wheel was compiled against another torch: fairseq.libbase does not load).
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --no-binary fairseq-fixed $(FAIRSEQ)
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	@$(BIN)/python -c 'import sys; v = "python%d.%d" % sys.version_info[:2]; \
	  sys.exit(0 if v in "$(PYTHONS)".split() else f"make demo: {v} is not one of $(PYTHONS)")'
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=25 tests

# GPU checks (tests/gpu collects nothing without CUDA); tests/conftest.py hides GPUs unless
# CUDA_VISIBLE_DEVICES is set, so make device 0 visible by default.
.PHONY: test-gpu
test-gpu: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" CUDA_VISIBLE_DEVICES=$${CUDA_VISIBLE_DEVICES:-0} \
	  $(BIN)/python -m pytest --durations=25 tests/gpu

bench: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/benchmarks/run_all.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
