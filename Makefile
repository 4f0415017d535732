# rgb-assets: `make demo` and `make test` on a fresh machine with Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install system-deps sample-data demo dev test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

data/sample/collection.json: $(VENV)/.installed
	$(PY) -m rgb_assets.tools.sample_data --dest data/sample --cache data/cache

sample-data: data/sample/collection.json

demo: sample-data
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.dev.yaml $(DAGSTER_HOME)/dagster.yaml
	RGB_ASSETS_DEPLOYMENT=demo $(PY) -m rgb_assets.tools.demo

dev: sample-data
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.dev.yaml $(DAGSTER_HOME)/dagster.yaml
	RGB_ASSETS_DEPLOYMENT=demo $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The test suite starts real servers: PostgreSQL + PostGIS (pgstac) and Chromium (UI test).
# Debian packages, installed once (idempotent, nothing done when present).
system-deps:
	@if [ "$$(id -u)" = 0 ]; then bash .ci/install-system.sh; \
	elif command -v sudo >/dev/null; then sudo bash .ci/install-system.sh; \
	else echo "make test needs PostgreSQL 15 + PostGIS 3 and chromium: run .ci/install-system.sh as root" >&2; exit 1; fi

test: sample-data system-deps
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check rgb_assets rgb_assets_tests benchmarks

bench: install
	$(PY) benchmarks/composite_bench.py

clean:
	rm -rf data/store .dagster_home
