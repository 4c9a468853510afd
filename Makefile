# l2s: every target creates .venv and installs into it on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BROWSER_STAMP := $(VENV)/.browser-installed
## Debian's Chromium, driven by Playwright (which cannot download its own browsers here).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: reproduce test test-browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.*"
	$(PY) -m pip install --quiet -e ".[dev,dicom]"
	$(PY) -m ipykernel install --sys-prefix --name l2s --display-name "l2s (.venv)" >/dev/null
	touch $(STAMP)

## The main job: phantom data -> quick study (every organ x network x run) -> report.
reproduce: $(STAMP)
	@start=$$(date +%s); \
	OMP_NUM_THREADS=1 $(VENV)/bin/l2s run papermill_params/quick.yaml --jobs 2; status=$$?; \
	echo "make reproduce: wall time $$(( $$(date +%s) - start )) s; report: $(CURDIR)/reports/quick/report.html"; \
	exit $$status

## The test suite (what CI runs): ruff (lint, format) and mypy, then pytest. -rs lists every skipped test with its reason; with CI set,
## missing real-CT data beside the project fails the run (tests/conftest.py).
test: $(STAMP)
	$(VENV)/bin/ruff check l2s_core tests benchmarks notebooks
	$(VENV)/bin/ruff format --check --quiet l2s_core tests benchmarks notebooks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -rs

## The explorer as a user sees it: explore.ipynb in JupyterLab in headless Chromium (Playwright).
test-browser: $(BROWSER_STAMP)
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	L2S_BROWSER_TEST=1 L2S_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -m browser tests/viewer/test_explorer_browser.py

$(BROWSER_STAMP): $(STAMP)
	$(PY) -m pip install --quiet "torch==2.13.*" playwright
	touch $(BROWSER_STAMP)

## Benchmarks: each prints one JSON object as its last line.
bench: $(STAMP)
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_infer.py

## Remove generated data, runs, executed notebooks and reports (keeps .venv).
clean:
	rm -rf phantom prepared runs executed reports .pytest_cache
