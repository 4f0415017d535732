"""PartitionPaths and ProductPaths: every store key of a partition, known answers."""

from __future__ import annotations

from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage import layout
from rgb_assets.core.storage.layout import PartitionPaths

PATHS = PartitionPaths("sentinel-2-l2a", "forest", Month(2019, 7))


def test_partition_keys():
    assert PATHS.raw == "raw/sentinel-2-l2a/forest/2019-07"
    assert PATHS.manifest == "raw/sentinel-2-l2a/forest/2019-07/items.json"
    assert PATHS.scene_dir("S2A_X") == "raw/sentinel-2-l2a/forest/2019-07/S2A_X"
    assert PATHS.scene_item("S2A_X") == "raw/sentinel-2-l2a/forest/2019-07/S2A_X/S2A_X.json"
    assert PATHS.composite == "composites/sentinel-2-l2a/forest/2019-07"
    assert PATHS.sidecar == "composites/sentinel-2-l2a/forest/2019-07/composite.json"
    assert PATHS.basename == "forest_2019-07_sentinel-2-l2a"
    assert PATHS.raw_catalog_item_id("S2A_X") == "S2A_X__forest"


def test_catalog_keys():
    assert (
        PATHS.catalog_partition(layout.DERIVED_CATALOG, "c-rgb")
        == "catalogs/derived/c-rgb/forest/2019-07"
    )
    assert (
        PATHS.catalog_item(layout.RAW_CATALOG, "sentinel-2-l2a", "i")
        == "catalogs/raw/sentinel-2-l2a/forest/2019-07/i/i.json"
    )
    assert layout.catalog_root(layout.RAW_CATALOG) == "catalogs/raw/catalog.json"
    assert layout.catalog_collection("catalogs/raw", "c") == "catalogs/raw/c/collection.json"
    assert layout.aoi_key("forest") == "aois/forest.geojson"
    assert layout.request_key("abc") == "requests/abc.json"


def test_product_paths():
    """A version's four files sit in its folder, named after the partition's basename."""
    product = PATHS.product("v1")
    stem = "composites/sentinel-2-l2a/forest/2019-07/v1/forest_2019-07_sentinel-2-l2a"
    assert product.folder == "composites/sentinel-2-l2a/forest/2019-07/v1"
    assert product.cog == f"{stem}.tif"
    assert product.zarr == f"{stem}.zarr"
    assert product.visual == f"{stem}_visual.tif"
    assert product.thumbnail == f"{stem}_thumbnail.png"
    assert product.files() == {
        "cog": product.cog,
        "visual": product.visual,
        "thumbnail": product.thumbnail,
    }
    assert PATHS.product("v2").folder != product.folder
