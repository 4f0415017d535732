"""Raw and derived items validate against the official JSON schemas of core and extensions.

The items are produced by the real pipeline core on the sample (one AOI × month) and checked
with ``jsonschema`` resolving every ``$ref`` from the offline schema folder. GeoJSON schemas
are not held there; a permissive stand-in is used and geometry validity is checked with shapely.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pystac
import pytest
from referencing import Registry, Resource
from shapely.geometry import shape

from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage.store import Store
from rgb_assets_tests.producer import produce_partition

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
def produced(sample_dir: Path) -> Store:
    store, _ = produce_partition(sample_dir, "schema-check", Month(2019, 8))
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
