"""Raw and derived items validate against the official JSON schemas of core and extensions.

The items are produced by the real pipeline core on the sample (one AOI × month) and checked
with ``jsonschema`` resolving every ``$ref`` from the offline schema folder. GeoJSON schemas
are not held there; a permissive stand-in is used and geometry validity is checked with shapely.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jsonschema
import pystac
import pytest
from referencing import Registry, Resource
from shapely.geometry import shape

from rgb_assets.core import layout
from rgb_assets.core.aoi import AoiRegistry
from rgb_assets.core.archive import archive_partition
from rgb_assets.core.catalogs import (
    StaticCatalog,
    composite_item,
    derived_collection,
    raw_catalog_item,
    raw_collection,
)
from rgb_assets.core.collections import get_collection
from rgb_assets.core.compositing import CompositeOptions
from rgb_assets.core.masking import MaskRule
from rgb_assets.core.months import Month
from rgb_assets.core.products import make_composite, publish_composite
from rgb_assets.core.stac_source import open_source
from rgb_assets.core.storage import Store

REPO = Path(__file__).resolve().parents[2]


def _registry(root: Path) -> Registry:
    def retrieve(uri: str) -> Resource:
        if "geojson.org" in uri:
            return Resource.from_contents({"$schema": "http://json-schema.org/draft-07/schema#"})
        path = root / uri.split("://", 1)[1]
        if not path.exists():
            raise LookupError(f"schema {uri} is not held offline ({path})")
        return Resource.from_contents(json.loads(path.read_text()))

    return Registry(retrieve=retrieve)


def _validate(item: dict, root: Path) -> list[str]:
    registry = _registry(root)
    version = item["stac_version"]
    core = f"https://schemas.stacspec.org/v{version}/item-spec/json-schema/item.json"
    checked = []
    for uri in [core, *item.get("stac_extensions", [])]:
        schema = registry.get_or_retrieve(uri).value.contents
        validator = jsonschema.Draft7Validator(schema, registry=registry)
        errors = sorted(validator.iter_errors(item), key=lambda e: e.path)
        assert not errors, f"{item['id']} fails {uri}: {errors[0].message}"
        checked.append(uri)
    assert shape(item["geometry"]).is_valid
    return checked


@pytest.fixture(scope="module")
def produced(sample_dir: Path):
    store = Store(tempfile.mkdtemp(prefix="rgb-schemas-"))
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    aoi, _ = AoiRegistry(store).add("schema-check", feature)
    spec = get_collection("sentinel-2-l2a")
    month = Month(2019, 8)
    source = open_source(str(sample_dir / "collection.json"))
    raw = archive_partition(source, spec, aoi, month, store)
    raw_cat = StaticCatalog(store, layout.RAW_CATALOG, "raw", "raw")
    upd = raw_cat.replace_partition(
        raw_collection(spec, source.url, spec.key),
        aoi.name,
        month,
        [raw_catalog_item(i, aoi.name) for i in raw.items],
    )
    result = make_composite(
        raw, spec, aoi, CompositeOptions(mask=MaskRule("scl")), Path(tempfile.mkdtemp())
    )
    files = publish_composite(result, store)
    der = StaticCatalog(store, layout.DERIVED_CATALOG, "derived", "derived")
    template = derived_collection(spec)
    key = der.item_key(template.id, aoi.name, month, "x")
    item = composite_item(
        spec=spec,
        aoi=aoi,
        month=month,
        bands=result.bands,
        grid=result.grid,
        files=files,
        item_key=key.replace("/x/x.json", f"/{aoi.name}_{month.key}_{spec.key}/i.json"),
        raw_item_keys=upd.item_keys,
        stats=result.stats,
        constellation="sentinel-2",
    )
    der.replace_partition(template, aoi.name, month, [item])
    return store


def test_derived_items_pass_official_schemas(produced: Store):
    root = Path(os.environ["RGB_ASSETS_STAC_SCHEMAS_DIR"])
    cat = pystac.Catalog.from_file(produced.uri("catalogs/derived/catalog.json"))
    items = list(cat.get_items(recursive=True))
    assert len(items) == 1
    checked = _validate(items[0].to_dict(), root)
    for ext in ("projection", "raster", "eo", "processing", "file"):
        assert any(f"/{ext}/" in uri for uri in checked), f"{ext} not declared/checked"


def test_raw_items_pass_official_schemas(produced: Store):
    root = Path(os.environ["RGB_ASSETS_STAC_SCHEMAS_DIR"])
    cat = pystac.Catalog.from_file(produced.uri("catalogs/raw/catalog.json"))
    items = list(cat.get_items(recursive=True))
    assert items
    for item in items:
        _validate(item.to_dict(), root)
