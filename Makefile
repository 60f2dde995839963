# evolens — every target bootstraps .venv when it is missing or when the dependency files changed.
# torch is installed first and pinned (constraints.txt): an unpinned torch pulls several GB of CUDA packages.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.evolens-installed
PYTEST_ARGS ?=

.PHONY: setup lint format test demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

test: lint
	$(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/evolens demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
