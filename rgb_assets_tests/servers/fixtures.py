"""Shared pytest fixtures of real servers, imported into ``conftest.py``: the live STAC API,
and a real Dask cluster for the modules that run pipelines on one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rgb_assets_tests.servers.dask_cluster import DaskCluster, dask_cluster
from rgb_assets_tests.servers.pgstac import PgStacServer, pgstac_server


@pytest.fixture(scope="session")
def pgstac(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgStacServer]:
    """One server per session: startup costs seconds, so tests share it and use their own
    collection ids to stay independent."""
    with pgstac_server(tmp_path_factory.mktemp("pgstac")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, one per module
    that asks for it (its runs start on idle workers)."""
    with dask_cluster(tmp_path_factory.mktemp("dask")) as c:
        yield c


@pytest.fixture(scope="module")
def storage(sample_dir: Path) -> Any:
    """The session's storage resource, as the demo deployment's runs build it."""
    from rgb_assets.config import Settings
    from rgb_assets.definitions import pipeline_resources

    return pipeline_resources(Settings.from_env())["storage"]
