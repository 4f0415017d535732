"""Raw and derived items validate against the official JSON schemas of core and extensions.

The items are produced by the real pipeline core on the sample (one AOI × month) and checked
with ``jsonschema`` resolving every ``$ref`` from the offline schema folder. GeoJSON schemas
are not held there; a permissive stand-in is used and geometry validity is checked with shapely.
"""

from __future__ import annotations

import functools
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


@functools.cache
def _registry(root: Path) -> Registry:
    def retrieve(uri: str) -> Resource:
        if "geojson.org" in uri:
            return Resource.from_contents({"$schema": "http://json-schema.org/draft-07/schema#"})
        path = root / uri.split("://", 1)[1]
        if not path.exists():
            raise LookupError(f"schema {uri} is not held offline ({path})")
        return Resource.from_contents(json.loads(path.read_text()))

    return Registry(retrieve=retrieve)


@functools.cache
def _validator(uri: str, root: Path) -> jsonschema.Draft7Validator:
    registry = _registry(root)
    schema = registry.get_or_retrieve(uri).value.contents
    return jsonschema.Draft7Validator(schema, registry=registry)


SPECS = {"Feature": "item", "Catalog": "catalog", "Collection": "collection"}


def _validate(item: dict, root: Path) -> list[str]:
    """Validate a STAC Item, Catalog or Collection against core and its declared extensions."""
    version = item["stac_version"]
    spec = SPECS[item["type"]]
    core = f"https://schemas.stacspec.org/v{version}/{spec}-spec/json-schema/{spec}.json"
    checked = []
    for uri in [core, *item.get("stac_extensions", [])]:
        validator = _validator(uri, root)
        errors = sorted(validator.iter_errors(item), key=lambda e: e.path)
        assert not errors, f"{item['id']} fails {uri}: {errors[0].message}"
        checked.append(uri)
    if spec == "item":
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


def stac_documents(root: Path) -> list[tuple[Path, dict]]:
    """Every STAC document under ``root``: items, catalogs, collections, and the items of
    ItemCollections (the partition manifests), whatever folder they are in."""
    found = []
    for path in sorted(root.rglob("*.json")):
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            continue
        if doc.get("type") == "FeatureCollection":
            found += [(path, f) for f in doc.get("features", []) if "stac_version" in f]
        elif doc.get("type") in SPECS and "stac_version" in doc:
            found.append((path, doc))
    return found


def test_every_stac_document_written_passes_official_schemas(produced: Store):
    """Catalogs, collections, catalog items, the archive's own item beside each clip and the
    partition manifest's items: all of them, not only what the catalogs link."""
    root = Path(os.environ["RGB_ASSETS_STAC_SCHEMAS_DIR"])
    docs = stac_documents(Path(produced.root))
    kinds = {(p.parts[len(Path(produced.root).parts)], d["type"]) for p, d in docs}
    assert {("raw", "Feature"), ("catalogs", "Feature"), ("catalogs", "Catalog")} <= kinds
    assert ("catalogs", "Collection") in kinds
    for path, doc in docs:
        try:
            _validate(doc, root)
        except AssertionError as e:
            raise AssertionError(f"{path}: {e}") from None


def test_sample_catalog_documents_pass_official_schemas(sample_dir: Path):
    """The demo's STAC source (built by ``make sample-data``) is STAC we write too."""
    root = Path(os.environ["RGB_ASSETS_STAC_SCHEMAS_DIR"])
    docs = stac_documents(sample_dir)
    assert {d["type"] for _, d in docs} == {"Collection", "Feature"}
    for path, doc in docs:
        try:
            _validate(doc, root)
        except AssertionError as e:
            raise AssertionError(f"{path}: {e}") from None
