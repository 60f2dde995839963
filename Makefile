# evolens — every target bootstraps .venv when it is missing or when the dependency files changed.
# torch is installed first and pinned (constraints.txt): an unpinned torch pulls several GB of CUDA packages.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.evolens-installed
PYTEST_ARGS ?=

.PHONY: setup browser lint format test demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# Headless Chromium for the report's browser test (tests/report/test_browser.py). Idempotent: nothing to do when
# /usr/bin/chromium exists; installed with apt when running as root (CI); otherwise a note (the test then skips,
# unless EVOLENS_REQUIRE_BROWSER=1). Playwright drives this Chromium; it never downloads a browser of its own.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (apt-get) for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else echo "note: /usr/bin/chromium is missing (sudo apt-get install chromium); the browser test will be skipped"; fi

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

test: lint browser
	$(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/evolens demo

# Benchmarks (bench/, README "Benchmarks"): ratios within one run, a table each and bench/results/<name>.json.
# BENCH_ARGS=--quick for small sizes (~4 min); BENCH_THREADS=1 is steadiest on a shared machine.
BENCH_ARGS    ?=
BENCH_THREADS ?= 1
bench: setup
	$(PY) bench/lens_speed.py --threads $(BENCH_THREADS) $(BENCH_ARGS)
	$(PY) bench/capture_overhead.py --threads $(BENCH_THREADS) $(BENCH_ARGS)
	$(PY) bench/memory.py --threads $(BENCH_THREADS) $(BENCH_ARGS)
	$(PY) bench/geometry_speed.py --threads $(BENCH_THREADS) $(BENCH_ARGS)
	$(PY) bench/detector_speed.py --threads $(BENCH_THREADS) $(BENCH_ARGS)
	$(PY) bench/dataset_throughput.py $(BENCH_ARGS)
	$(PY) bench/dispatch_count.py --threads $(BENCH_THREADS) $(BENCH_ARGS)
	$(PY) bench/compiled_decoding.py --threads $(BENCH_THREADS) $(BENCH_ARGS)
	PYTHONPATH=src $(PY) bench/skip_speed.py --threads $(BENCH_THREADS) --layers 8 --hidden 256 --new-tokens 16 --repeats 2
	PYTHONPATH=src $(PY) bench/decode.py --threads $(BENCH_THREADS) $(BENCH_ARGS)
	@if $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
		$(PY) bench/gpu.py $(BENCH_ARGS); \
	else echo "bench/gpu.py: no CUDA GPU on this machine, skipped"; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
