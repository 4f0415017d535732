# rgb-assets: `make demo` and `make test` on a fresh machine with Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

# The persistent Dask cluster every run of `make demo` / `make dev` uses (rgb_assets/cluster.py).
DASK_PORT ?= 8786
DASK_DASHBOARD_PORT ?= 8787
DASK_SCHEDULER := tcp://127.0.0.1:$(DASK_PORT)
# The code server of `make dev` (rgb_assets/code_server.py): run processes forked warm.
CODE_SERVER_PORT ?= 4266

.PHONY: install system-deps sample-data demo dev test lint bench pipeline-bench serve notebook clean cluster-up cluster-down

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

data/sample/collection.json: $(VENV)/.installed
	$(PY) -m rgb_assets.tools.sample_data --dest data/sample --cache data/cache

sample-data: data/sample/collection.json

# Scheduler (dashboard http://127.0.0.1:$(DASK_DASHBOARD_PORT)/status) and one worker per core on
# 127.0.0.1, started once and left running; workers preload the code location.
cluster-up: install
	$(PY) -m rgb_assets.cluster up --port $(DASK_PORT) --dashboard-port $(DASK_DASHBOARD_PORT)

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m rgb_assets.cluster down; fi

demo: sample-data cluster-up
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.dev.yaml $(DAGSTER_HOME)/dagster.yaml
	RGB_ASSETS_DEPLOYMENT=demo RGB_ASSETS_DASK_SCHEDULER=$(DASK_SCHEDULER) $(PY) -m rgb_assets.tools.demo
	@echo "The Dask cluster keeps running for the next runs (make dev); stop it with make cluster-down."

# Dagster UI on http://127.0.0.1:3000. The code location is served by `rgb-assets code-server`
# (run processes forked from a process that already imported it), through the workspace file
# of the Compose stack; after a code change, restart `make dev`. (`dagster dev -w
# workspace.yaml` reloads code from the UI instead, each run then importing it anew.)
dev: sample-data cluster-up
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.dev.yaml $(DAGSTER_HOME)/dagster.yaml
	export RGB_ASSETS_DEPLOYMENT=demo RGB_ASSETS_DASK_SCHEDULER=$(DASK_SCHEDULER) \
		DAGSTER_CODE_SERVER_HOST=127.0.0.1 DAGSTER_CODE_SERVER_PORT=$(CODE_SERVER_PORT); \
	$(VENV)/bin/rgb-assets code-server -h 127.0.0.1 -p $(CODE_SERVER_PORT) & server=$$!; \
	trap 'kill $$server 2>/dev/null' EXIT INT TERM; \
	$(PY) -m rgb_assets.code_server --wait -p $(CODE_SERVER_PORT) --pid $$server && \
	$(VENV)/bin/dagster dev -w docker/workspace.yaml -h 127.0.0.1 -p 3000

# The request service with the map viewer (http://127.0.0.1:8080/map) and API docs (/docs).
serve: install
	RGB_ASSETS_DEPLOYMENT=demo $(VENV)/bin/rgb-assets serve --host 127.0.0.1 --port 8080

# JupyterLab (the `notebook` extra) on 127.0.0.1 with notebooks/explore_composites.ipynb.
notebook: install
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e ".[dev,notebook]"
	cd notebooks && RGB_ASSETS_STORAGE_ROOT=$${RGB_ASSETS_STORAGE_ROOT:-$(CURDIR)/data/store} \
		../$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser explore_composites.ipynb

# The test suite starts real servers: PostgreSQL + PostGIS (pgstac) and Chromium (UI test).
# Debian packages, installed once (idempotent, nothing done when present).
system-deps:
	@if [ "$$(id -u)" = 0 ]; then bash .ci/install-system.sh; \
	elif command -v sudo >/dev/null; then sudo bash .ci/install-system.sh; \
	else echo "make test needs PostgreSQL 15 + PostGIS 3 and chromium: run .ci/install-system.sh as root" >&2; exit 1; fi

test: sample-data system-deps
	$(PY) -m pytest -q --durations=15

lint: install
	$(VENV)/bin/ruff check rgb_assets rgb_assets_tests benchmarks

bench: install
	$(PY) benchmarks/composite_bench.py

pipeline-bench: install
	$(PY) benchmarks/pipeline_bench.py

clean: cluster-down
	rm -rf data/store .dagster_home
