"""StaticCatalog.replace_partition and composite_item, on a temporary store."""

from __future__ import annotations

import json
import posixpath
from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest

from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.catalog import (
    CompositeFiles,
    StaticCatalog,
    composite_item,
    derived_collection,
)
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store

SPEC = get_collection("sentinel-2-l2a")
JUNE, JULY = Month(2019, 6), Month(2019, 7)


def _item(item_id: str, bbox: list[float], when: datetime) -> pystac.Item:
    x0, y0, x1, y1 = bbox
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return pystac.Item(item_id, {"type": "Polygon", "coordinates": [ring]}, bbox, when, {})


def _day(month: Month, day: int) -> datetime:
    return datetime(month.year, month.month, day, tzinfo=UTC)


@pytest.fixture
def catalog(tmp_path: Path) -> StaticCatalog:
    return StaticCatalog(Store(tmp_path / "store"), "catalogs/test", "Test", "A test catalog")


def _collection(cat: StaticCatalog) -> dict:
    key = f"{cat.prefix}/{derived_collection(SPEC).id}/collection.json"
    return json.loads(cat.store.read_text(key))


def _item_ids(cat: StaticCatalog) -> list[str]:
    """Items reachable from the root, read back with pystac from the files on disk."""
    root = pystac.Catalog.from_file(cat.store.uri(cat.root_key))
    return sorted(i.id for i in root.get_items(recursive=True))


def test_items_are_written_and_linked_from_root_and_collection(catalog: StaticCatalog):
    template = derived_collection(SPEC)
    items = [_item("a", [1, 1, 2, 2], _day(JULY, 3)), _item("b", [2, 2, 3, 3], _day(JULY, 9))]
    update = catalog.replace_partition(template, "forest", JULY, items)
    expected = [catalog.item_key(template.id, "forest", JULY, i) for i in ("a", "b")]
    assert update.item_keys == expected
    assert expected[0] == "catalogs/test/sentinel-2-l2a-monthly-rgb/forest/2019-07/a/a.json"
    assert all(catalog.store.exists(k) for k in expected)
    assert update.removed == []
    assert _item_ids(catalog) == ["a", "b"]
    root = json.loads(catalog.store.read_text(catalog.root_key))
    assert [lk["href"] for lk in root["links"] if lk["rel"] == "child"] == [
        "./sentinel-2-l2a-monthly-rgb/collection.json"
    ]
    written = json.loads(catalog.store.read_text(expected[0]))
    assert written["collection"] == template.id
    assert not any(p.name.startswith(".tmp-") for p in Path(catalog.store.root).rglob("*"))


def test_replacing_again_replaces_and_never_duplicates(catalog: StaticCatalog):
    template = derived_collection(SPEC)
    catalog.replace_partition(template, "forest", JULY, [_item("a", [1, 1, 2, 2], _day(JULY, 3))])
    catalog.replace_partition(template, "forest", JULY, [_item("a", [1, 1, 2, 2], _day(JULY, 3))])
    links = [lk for lk in _collection(catalog)["links"] if lk["rel"] == "item"]
    assert len(links) == 1
    update = catalog.replace_partition(
        template, "forest", JULY, [_item("b", [1, 1, 2, 2], _day(JULY, 4))]
    )
    old = catalog.item_key(template.id, "forest", JULY, "a")
    assert update.removed == [old]
    assert not catalog.store.exists(old)
    assert not catalog.store.exists(old.rsplit("/", 1)[0]), "the item's folder goes too"
    assert _item_ids(catalog) == ["b"]


def test_other_partitions_are_untouched(catalog: StaticCatalog):
    template = derived_collection(SPEC)
    catalog.replace_partition(template, "forest", JUNE, [_item("j", [1, 1, 2, 2], _day(JUNE, 1))])
    catalog.replace_partition(template, "lake", JULY, [_item("l", [1, 1, 2, 2], _day(JULY, 1))])
    june_key = catalog.item_key(template.id, "forest", JUNE, "j")
    before = catalog.store.read_bytes(june_key)
    catalog.replace_partition(template, "forest", JULY, [_item("a", [1, 1, 2, 2], _day(JULY, 3))])
    catalog.replace_partition(template, "forest", JULY, [])
    assert catalog.store.read_bytes(june_key) == before
    assert _item_ids(catalog) == ["j", "l"]


def test_an_empty_list_removes_the_partitions_items(catalog: StaticCatalog):
    template = derived_collection(SPEC)
    items = [_item("a", [1, 1, 2, 2], _day(JULY, 3)), _item("b", [2, 2, 3, 3], _day(JULY, 9))]
    catalog.replace_partition(template, "forest", JULY, items)
    update = catalog.replace_partition(template, "forest", JULY, [])
    assert sorted(update.removed) == [
        catalog.item_key(template.id, "forest", JULY, i) for i in ("a", "b")
    ]
    assert update.item_keys == []
    assert _item_ids(catalog) == []
    assert catalog.store.listdir(catalog.partition_dir(template.id, "forest", JULY)) == []


def test_extents_only_widen(catalog: StaticCatalog):
    """A fresh collection takes its items' extent; another partition widens it; replacing a
    partition with smaller, later items or with nothing never shrinks it."""
    template = derived_collection(SPEC)
    catalog.replace_partition(template, "forest", JUNE, [_item("j", [1, 1, 2, 2], _day(JUNE, 5))])
    ext = _collection(catalog)["extent"]
    assert ext["spatial"]["bbox"] == [[1, 1, 2, 2]]
    assert ext["temporal"]["interval"] == [["2019-06-05T00:00:00Z", "2019-06-05T00:00:00Z"]]
    catalog.replace_partition(template, "lake", JULY, [_item("l", [5, 0, 6, 3], _day(JULY, 20))])
    widened = _collection(catalog)["extent"]
    assert widened["spatial"]["bbox"] == [[1, 0, 6, 3]]
    assert widened["temporal"]["interval"] == [["2019-06-05T00:00:00Z", "2019-07-20T00:00:00Z"]]
    catalog.replace_partition(
        template, "lake", JULY, [_item("l", [5.5, 1, 5.6, 2], _day(JULY, 21))]
    )
    later = _collection(catalog)["extent"]
    assert later["spatial"]["bbox"] == [[1, 0, 6, 3]]
    assert later["temporal"]["interval"] == [["2019-06-05T00:00:00Z", "2019-07-21T00:00:00Z"]]
    catalog.replace_partition(template, "lake", JULY, [])
    assert _collection(catalog)["extent"] == later


# -- composite_item --------------------------------------------------------------------------
AOI = Aoi.create(
    "forest",
    {
        "type": "Polygon",
        "coordinates": [[[22.1, 45.2], [22.2, 45.2], [22.2, 45.3], [22.1, 45.3], [22.1, 45.2]]],
    },
)


def test_composite_item_fields():
    paths = PartitionPaths(SPEC.key, "forest", JULY)
    product = paths.product("v1")
    item_key = paths.catalog_item("catalogs/derived", "c-rgb", paths.basename)
    raw_key = paths.catalog_item("catalogs/raw", SPEC.key, "S2A_X__forest")
    files = CompositeFiles(
        cog=product.cog,
        zarr=product.zarr,
        visual=product.visual,
        thumbnail=product.thumbnail,
        sizes={product.cog: 1234, product.visual: 99},
        checksums={product.cog: "1220" + "ab" * 32},
        version="v1",
    )
    grid = {
        "epsg": 32634,
        "shape": [92, 96],
        "transform": [10.0, 0.0, 589990.0, 0.0, -10.0, 5006830.0],
        "resolution": 10.0,
    }
    red = {"minimum": 0.01, "maximum": 0.2, "mean": 0.05, "stddev": 0.02, "valid_percent": 98.0}
    stats = {"observations": 5, "clear_fraction": 0.98, "bands": {"red": red}}
    item = composite_item(
        spec=SPEC,
        aoi=AOI,
        month=JULY,
        bands=("red", "green", "blue"),
        grid=grid,
        files=files,
        item_id=paths.basename,
        item_key=item_key,
        raw_item_keys=[raw_key],
        stats=stats,
        constellation="sentinel-2",
    )
    d = item.to_dict(include_self_link=False)
    p = d["properties"]
    assert d["id"] == "forest_2019-07_sentinel-2-l2a"
    assert d["bbox"] == [22.1, 45.2, 22.2, 45.3]
    assert p["datetime"] is None
    assert p["start_datetime"] == "2019-07-01T00:00:00Z"
    assert p["end_datetime"] == "2019-07-31T23:59:59.999000Z"
    assert p["rgb_assets:aoi"] == "forest" and p["rgb_assets:month"] == "2019-07"
    assert p["rgb_assets:observations"] == 5 and p["rgb_assets:clear_fraction"] == 0.98
    assert p["constellation"] == "sentinel-2" and p["gsd"] == 10.0
    assert p["proj:code"] == "EPSG:32634"
    assert p["proj:shape"] == [92, 96] and p["proj:transform"] == grid["transform"]
    assert p["processing:level"] == "L3" and "rasterio" in p["processing:software"]
    assert set(d["assets"]) == {"data", "visual", "thumbnail", "zarr"}
    base = posixpath.dirname(item_key)
    for role, key in (("data", product.cog), ("visual", product.visual), ("zarr", product.zarr)):
        href = d["assets"][role]["href"]
        assert not href.startswith("/") and posixpath.normpath(posixpath.join(base, href)) == key
    data = d["assets"]["data"]
    assert data["file:size"] == 1234 and data["file:checksum"] == "1220" + "ab" * 32
    assert "file:size" not in d["assets"]["zarr"]
    assert [b["name"] for b in data["eo:bands"]] == ["red", "green", "blue", "clear_count"]
    assert [b["nodata"] for b in data["raster:bands"]] == ["nan"] * 4
    assert data["raster:bands"][0]["statistics"] == red
    assert "statistics" not in data["raster:bands"][1], "no statistics for a band without them"
    assert d["assets"]["visual"]["roles"] == ["visual"]
    assert d["assets"]["thumbnail"]["type"] == "image/png"
    derived = [lk for lk in d["links"] if lk["rel"] == "derived_from"]
    assert len(derived) == 1
    assert posixpath.normpath(posixpath.join(base, derived[0]["href"])) == raw_key
