# Two commands on a fresh machine with Python 3.11:  `make demo`  and  `make test`.
# Both create .venv on first use; nothing else needs to be installed by hand.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.endist-installed
FAIRSEQ := fairseq-fixed==0.12.3.1
# Threads per process: tests run two pytest workers on a 2-core machine.
TEST_WORKERS ?= 2

.PHONY: demo test venv clean bench

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1 "numpy>=1.26" cython
	@# fairseq-fixed: no deps (its torchaudio pin has no torch-2.14 build), built against our torch.
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation $(FAIRSEQ)
	$(BIN)/python -m pip install -q --no-build-isolation -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"
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
