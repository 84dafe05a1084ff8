# onnx-emit: `make demo` and `make test` work on a fresh Debian 12 machine (as root, or with sudo).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_ARGS ?=
BENCH_ARGS ?=
# Debian package for each tool the builds and tests use (a tool already on PATH is not reinstalled):
# C compilers, emscripten (wasm), Chromium (browser test), QEMU + the Arm toolchain (Cortex-M), node/npm (Pyodide).
APT_TOOLS := gcc:gcc clang:clang make:make cmake:cmake emcc:emscripten chromium:chromium \
  qemu-system-arm:qemu-system-arm arm-none-eabi-gcc:gcc-arm-none-eabi node:nodejs npm:npm
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: all deps demo test bench conformance fetch-models lint clean help

all: help

help:
	@echo "make demo         install what is needed, export the example model, run it beside onnxruntime, then serve"
	@echo "                  a page on http://127.0.0.1:8000/digits.html to draw digits for its wasm build (Ctrl-C stops;"
	@echo "                  make demo DEMO_ARGS=--no-serve builds without serving)"
	@echo "make test         install what is needed, run the whole test suite"
	@echo "make bench        install what is needed, time onnx-emit against onnxruntime (native) and onnxruntime-web"
	@echo "                  (wasm, in node) on the benchmark set: bench/RESULTS.md + bench/ratios.png, ~5-10 min"
	@echo "                  (make bench BENCH_ARGS='--quick --models mlp,lenet' for a smoke run)"
	@echo "make conformance  regenerate SUPPORTED_OPS.md from the ONNX backend node cases"
	@echo "make fetch-models download the real models of tests/models.tsv into the cache"
	@echo "make lint         ruff"

# Debian packages: only the missing ones, so repeated runs stay fast.
.apt-checked:
	@missing=""; \
	for pair in $(APT_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	test -f /usr/lib/arm-none-eabi/newlib/rdimon.specs || missing="$$missing libnewlib-arm-none-eabi"; \
	$(PYTHON) -c "import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'],'Python.h')))" \
	  || missing="$$missing python3-dev"; \
	$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@touch $@

# npm packages (Pyodide, run under node by the tests) into ./node_modules, pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json .apt-checked
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP): pyproject.toml .apt-checked
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

deps: $(STAMP) node_modules/.installed

demo: deps
	$(PY) examples/demo.py $(DEMO_ARGS)

fetch-models: deps
	$(PY) scripts/fetch_models.py --all

test: deps fetch-models
	$(PY) -m pytest -q tests

# matplotlib (the chart) and onnxruntime: the `bench` extra, kept out of `deps` so `make test` does not need it
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $@

bench: deps $(BENCH_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

conformance: deps
	$(PY) tests/conformance.py --out SUPPORTED_OPS.md

lint: deps
	$(VENV)/bin/ruff check emit tests scripts examples bench

clean:
	rm -rf build .pytest_cache node_modules
