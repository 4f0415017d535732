"""Planetary Computer hrefs are signed with the ``planetary-computer`` package just before
reading, never in the items we keep.

The package fetches SAS tokens from the PC token service; here a token service on 127.0.0.1
that speaks the same protocol (``GET <sas_url>/<account>/<container>`` →
``{"msft:expiry", "token"}``) stands in for the public one, through the package's own
``PC_SDK_SAS_URL`` setting.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import planetary_computer
import pystac
import pytest
from planetary_computer.sas import TOKEN_CACHE
from planetary_computer.settings import Settings

from rgb_assets.core.domain.collection_specs import PLANETARY_COMPUTER_URL
from rgb_assets.core.stac.source import sign_hrefs

FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "fixtures"
    / "stac_items"
    / "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
)
TOKEN = "st=2026-11-24T00%3A00%3A00Z&se=2026-11-25T00%3A00%3A00Z&sp=rl&sig=local"


@pytest.fixture
def token_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            requested.append(self.path)
            expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            body = json.dumps({"msft:expiry": expiry, "token": TOKEN}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PC_SDK_SAS_URL", f"http://127.0.0.1:{server.server_address[1]}/token")
    Settings.get.cache_clear()
    TOKEN_CACHE.clear()
    try:
        yield requested
    finally:
        server.shutdown()
        server.server_close()
        Settings.get.cache_clear()
        TOKEN_CACHE.clear()


def test_items_from_planetary_computer_are_signed_as_copies(token_service):
    item = pystac.Item.from_file(str(FIXTURE))
    before = {k: a.href for k, a in item.assets.items()}
    (signed,) = sign_hrefs([item], PLANETARY_COMPUTER_URL)
    assert signed is not item
    blob = [k for k, h in before.items() if ".blob.core.windows.net/" in h]
    assert "B04" in blob and "SCL" in blob
    for key in blob:
        assert signed.assets[key].href == f"{before[key]}?{TOKEN}"
    # The item we archive and catalog keeps its unsigned hrefs.
    assert {k: a.href for k, a in item.assets.items()} == before
    # One token per storage container, fetched from the token service and then cached.
    assert token_service == ["/token/sentinel2l2a01/sentinel2-l2"]
    assert planetary_computer.sign(before["B02"]).endswith(TOKEN)
    assert len(token_service) == 1


def test_other_providers_are_not_signed(token_service):
    item = pystac.Item.from_file(str(FIXTURE))
    (same,) = sign_hrefs([item], "https://earth-search.aws.element84.com/v1")
    assert same is item and not token_service
