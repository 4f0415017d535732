"""The map viewer (``GET /map``) and ``/docs`` of the request service in headless Chromium.

Two months of the sample are made with the core into one store; the real app runs under
uvicorn on 127.0.0.1; every browser request that leaves 127.0.0.1 is blocked and recorded, so
the pages are proven to work offline (Leaflet and Swagger UI come from installed packages).
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

from rgb_assets.config import Settings
from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage.store import Store
from rgb_assets_tests.producer import produce_partition

REPO = Path(__file__).resolve().parents[2]
AOI = "viewer-sample"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def service(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    from rgb_assets.service.app import create_app

    store = Store(tmp_path_factory.mktemp("viewer") / "store")
    for month in (Month(2019, 7), Month(2019, 8)):
        produce_partition(sample_dir, AOI, month, store)
    settings = Settings(
        dagster_graphql="http://127.0.0.1:9/graphql",  # no Dagster needed to view what exists
        storage_root=store.root,
        stac_url=str(sample_dir / "collection.json"),
        collection="sentinel-2-l2a",
    )
    app = create_app(settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page whose requests beyond 127.0.0.1 are aborted and listed."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def only_local(route: Any) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.route("**/*", only_local)
            yield context.new_page(), outside
        finally:
            browser.close()


def _composite_pixels(png: bytes) -> np.ndarray:
    """The opaque pixels of a tile (RGB), after checking it is a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    return rgba[..., :3][rgba[..., 3] > 0]


def test_map_page_tiles_slider_pixel_and_compare(
    service: str, browser_page: tuple[Any, list[str]]
) -> None:
    page, outside = browser_page
    responses: list[Any] = []
    page.on("response", lambda r: responses.append(r) if "/cog/tiles/" in r.url else None)

    def tiles(month: str) -> list[bytes]:
        """Bodies of the tiles of ``month`` answered so far (read outside the event handler)."""
        return [
            r.body()
            for r in list(responses)
            if r.status == 200 and parse_qs(urlparse(r.url).query)["month"] == [month]
        ]

    def drawn(month: str) -> None:
        page.wait_for_function(
            "m => [...document.querySelectorAll('.leaflet-tile-loaded')]"
            ".some(t => t.src.includes('month=' + m))",
            arg=month,
        )

    page.goto(f"{service}/map", wait_until="networkidle")
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate("typeof L") == "object"  # Leaflet loaded from the app itself
    assert page.locator("#aoi").input_value() == AOI
    # The newest month first, with its clear fraction and scene count.
    assert page.get_attribute("body", "data-month") == "2019-08"
    facts = page.locator("#month-facts").inner_text()
    assert "2019-08" in facts and "clear" in facts and "scene" in facts
    drawn("2019-08")
    august = tiles("2019-08")
    assert august, "no tile of 2019-08 was served"
    pixels = np.concatenate([_composite_pixels(png) for png in august])
    # Composite pixels: many opaque pixels, forest colours (green-dominated, not flat).
    assert len(pixels) > 1000
    assert pixels.std(axis=0).min() > 1.0
    assert pixels[:, 1].mean() >= pixels[:, 2].mean()

    # The slider switches months: July's tiles are requested and drawn.
    page.locator("#slider").focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.body.dataset.month === '2019-07'")
    drawn("2019-07")
    july = tiles("2019-07")
    assert july and len(np.concatenate([_composite_pixels(p) for p in july])) > 1000
    assert "2019-07" in page.locator("#month-facts").inner_text()

    # Pixel values on click: reflectance per band and the clear count.
    box = page.locator("#map").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("document.body.dataset.pixel !== undefined")
    text = page.locator("#pixel").inner_text()
    assert all(name in text for name in ("red", "green", "blue", "clear_count")), text
    values = page.evaluate("JSON.parse(document.body.dataset.pixel)")
    assert 0 < values[0] < 0.3 and values[3] >= 1

    # Swipe compare: the other month in its own clipped pane.
    page.get_by_label("compare with").check()
    page.select_option("#compare-month", "1")  # July on the left, August on the right
    page.wait_for_function("document.body.dataset.compareMonth === '2019-08'")
    page.wait_for_function(
        "document.querySelectorAll('.leaflet-pane.leaflet-compare-pane .leaflet-tile-loaded')"
        ".length > 0"
    )
    clip = page.evaluate("document.querySelector('.leaflet-compare-pane').style.clip")
    assert clip.startswith("rect("), clip
    shot = REPO / "docs" / "screenshots" / "map-viewer.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert not outside, f"the map page reached outside 127.0.0.1: {outside}"


def test_docs_render_offline(service: str, browser_page: tuple[Any, list[str]]) -> None:
    page, outside = browser_page
    page.goto(f"{service}/docs", wait_until="networkidle")
    page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
    assert "rgb-assets request API" in page.locator(".swagger-ui .info .title").inner_text()
    page.get_by_text("/requests/{request_id}", exact=True).first.wait_for()
    assert page.locator(".opblock").count() >= 4
    assert not outside, f"/docs reached outside 127.0.0.1: {outside}"


def test_derived_catalog_over_http(service: str) -> None:
    """The derived catalog served by /store: relative hrefs resolve over HTTP; the collection
    has a thumbnail and a time series; items carry renders."""
    import httpx
    import pystac

    root = pystac.Catalog.from_file(f"{service}/store/catalogs/derived/catalog.json")
    (collection,) = list(root.get_children())
    assert isinstance(collection, pystac.Collection)
    assert collection.get_self_href().startswith(f"{service}/store/")
    assert collection.summaries.get_list("rgb_assets:month") == ["2019-07", "2019-08"]
    assert collection.summaries.get_list("rgb_assets:aoi") == [AOI]
    thumb = collection.assets["thumbnail"].get_absolute_href()
    assert "2019-08" in thumb and thumb.startswith(f"{service}/store/")
    assert httpx.get(thumb).content[:8] == b"\x89PNG\r\n\x1a\n"
    rows = httpx.get(collection.assets["timeseries"].get_absolute_href()).json()["rows"]
    assert [(r["aoi"], r["month"]) for r in rows] == [(AOI, "2019-07"), (AOI, "2019-08")]
    items = sorted(collection.get_items(), key=lambda i: i.id)
    assert [i.properties["rgb_assets:month"] for i in items] == ["2019-07", "2019-08"]
    for row, item in zip(rows, items, strict=True):
        # Scenes used = the item's raw sources, as the time series and the item both say.
        sources = [lk for lk in item.links if lk.rel == "derived_from"]
        assert row["scene_count"] == item.properties["rgb_assets:scene_count"] == len(sources) > 0
        assert row["clear_fraction"] == item.properties["rgb_assets:clear_fraction"] > 0.9
        assert item.properties["renders"]["visual"]["rescale"] == [[0, 0.3]] * 3
        cog = httpx.get(item.assets["visual"].get_absolute_href())
        assert cog.status_code == 200 and cog.content[:2] in (b"II", b"MM")
        assert cog.headers["access-control-allow-origin"] == "*"
    assert httpx.get(f"{service}/store/requests/x.json").status_code == 404
    assert httpx.get(f"{service}/store/composites/../requests/x.json").status_code == 404
