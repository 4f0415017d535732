"""The Dagster preview metadata: thumbnail inline (data URI or served URL), banners otherwise."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from rgb_assets.assets.previews import preview_metadata
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.catalog import CompositeFiles
from rgb_assets.core.storage.store import Store

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
KEY = "composites/s2/forest/2019-07/v1/forest_2019-07_s2_thumbnail.png"


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Store, CompositeFiles]:
    store = Store(tmp_path / "store")
    store.write_bytes(KEY, PNG)
    files = CompositeFiles("a.tif", "a.zarr", "a_visual.tif", KEY, {}, {}, version="v1")
    return store, files


def test_published_month_embeds_the_thumbnail(stored: tuple[Store, CompositeFiles]) -> None:
    store, files = stored
    md = preview_metadata(
        store, "forest", Month(2019, 7), outcome="published", files=files,
        clear_fraction=0.98, scene_count=5,
    )  # fmt: skip
    text = md["preview"].value
    assert f"(data:image/png;base64,{base64.b64encode(PNG).decode()})" in text
    assert "clear 98%, 5 scenes" in text and "No data" not in text
    assert md["viewer"].value == "http://127.0.0.1:8080/map?aoi=forest&month=2019-07"


def test_public_url_serves_the_thumbnail(stored: tuple[Store, CompositeFiles]) -> None:
    store, files = stored
    md = preview_metadata(
        store, "forest", Month(2019, 7), outcome="published", files=files,
        public_url="https://maps.example.org/rgb",
    )  # fmt: skip
    text = md["preview"].value
    assert f"(https://maps.example.org/rgb/store/{KEY})" in text
    assert len(text) < 1000  # short enough for Dagster to draw it inline
    assert md["viewer"].value == "https://maps.example.org/rgb/map?aoi=forest&month=2019-07"


def test_no_data_and_blocked_months_say_so(stored: tuple[Store, CompositeFiles]) -> None:
    store, files = stored
    empty = preview_metadata(store, "forest", Month(2019, 5), outcome="no data", files=None)
    assert empty["preview"].value.startswith("> **No data**")
    assert "viewer" not in empty and "data:image" not in empty["preview"].value
    kept = preview_metadata(store, "forest", Month(2019, 7), outcome="no data", files=files)
    assert kept["preview"].value.startswith("> **No data**")
    assert "published before is kept (version v1)" in kept["preview"].value
    blocked = preview_metadata(store, "forest", Month(2019, 7), outcome="blocked", files=None)
    assert blocked["preview"].value.startswith("> **Blocked**")


def test_a_version_replaced_by_a_later_run_leaves_a_note_not_a_failure(
    stored: tuple[Store, CompositeFiles],
) -> None:
    """Two runs of a partition overlap: the later one's catalog step removed this run's
    version before this run drew its preview. The run's preview says so; the step goes on."""
    store, files = stored
    store.delete(KEY)
    md = preview_metadata(store, "forest", Month(2019, 7), outcome="published", files=files)
    text = md["preview"].value
    assert "data:image/png" not in text
    assert "replaced by a later run" in text
