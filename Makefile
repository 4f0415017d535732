# rgb-assets: `make demo` and `make test` on a fresh machine with Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install sample-data demo dev test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

data/sample/collection.json: $(VENV)/.installed
	$(PY) -m rgb_assets.core.sample_data --dest data/sample --cache data/cache

sample-data: data/sample/collection.json

demo: sample-data
	mkdir -p $(DAGSTER_HOME)
	RGB_ASSETS_DEPLOYMENT=demo $(PY) -m rgb_assets.demo

dev: sample-data
	mkdir -p $(DAGSTER_HOME)
	RGB_ASSETS_DEPLOYMENT=demo $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: sample-data
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check rgb_assets rgb_assets_tests benchmarks

bench: install
	$(PY) benchmarks/composite_bench.py

clean:
	rm -rf data/store .dagster_home
