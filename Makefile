# onnx-emit: `make demo` and `make test` work on a fresh Debian 12 machine (as root, or with sudo).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := gcc clang make cmake python3-venv python3-dev
STAMP := $(VENV)/.installed

.PHONY: all deps demo test conformance fetch-models lint clean help

all: help

help:
	@echo "make demo         install what is needed, export the example model, run it beside onnxruntime"
	@echo "make test         install what is needed, run the whole test suite"
	@echo "make conformance  regenerate SUPPORTED_OPS.md from the ONNX backend node cases"
	@echo "make fetch-models download the real models of tests/models.tsv into the cache"
	@echo "make lint         ruff"

# Debian packages: only when a tool is missing, so repeated runs stay fast.
.apt-checked:
	@if ! command -v gcc >/dev/null || ! command -v clang >/dev/null || ! command -v cmake >/dev/null \
	   || ! $(PYTHON) -c "import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'],'Python.h')))" \
	   || ! $(PYTHON) -c "import venv, ensurepip" 2>/dev/null; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@touch $@

$(STAMP): pyproject.toml .apt-checked
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

deps: $(STAMP)

demo: deps
	$(PY) examples/demo.py

fetch-models: deps
	$(PY) scripts/fetch_models.py --all

test: deps fetch-models
	$(PY) -m pytest -q tests

conformance: deps
	$(PY) tests/conformance.py --out SUPPORTED_OPS.md

lint: deps
	$(VENV)/bin/ruff check emit tests scripts examples

clean:
	rm -rf build .pytest_cache
