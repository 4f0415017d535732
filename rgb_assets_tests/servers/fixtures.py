"""pytest fixture for the live STAC API; the lead imports it into conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rgb_assets_tests.servers.pgstac import PgStacServer, pgstac_server


@pytest.fixture(scope="session")
def pgstac(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgStacServer]:
    """One server per session: startup costs seconds, so tests share it and use their own
    collection ids to stay independent."""
    with pgstac_server(tmp_path_factory.mktemp("pgstac")) as server:
        yield server
