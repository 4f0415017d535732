"""Test session setup: the demo deployment on a temporary store and DAGSTER_HOME.

The environment is set before any test imports ``rgb_assets.definitions`` so that the parent
process and the Dask workers the executor spawns (which inherit it) build the same resources.
The sample catalog is built by ``make sample-data`` (tests never download).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from rgb_assets_tests.servers.fixtures import cluster, pgstac, storage  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("RGB_ASSETS_SAMPLE_DIR", REPO / "data" / "sample"))
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="rgb-assets-tests-"))

os.environ["RGB_ASSETS_DEPLOYMENT"] = "demo"
os.environ["RGB_ASSETS_STAC_URL"] = str(SAMPLE / "collection.json")
os.environ["RGB_ASSETS_STORAGE_ROOT"] = str(_SESSION_DIR / "store")
os.environ["DAGSTER_HOME"] = str(_SESSION_DIR / "dagster_home")
(_SESSION_DIR / "dagster_home").mkdir(parents=True, exist_ok=True)
# The instance settings `make dev` uses (run monitoring marks runs of killed processes failed).
(_SESSION_DIR / "dagster_home" / "dagster.yaml").write_text((REPO / "dagster.dev.yaml").read_text())


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE / "collection.json").exists():
        pytest.fail(f"sample catalog missing at {SAMPLE}: run `make sample-data` first")
    return SAMPLE


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR
