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


# Extensions whose official schemas are not in the offline folder: their fields are checked
# against the rules their specifications state (render v2.0.0, web-map-links v1.2.0).
NOT_HELD = {
    "https://stac-extensions.github.io/render/v2.0.0/schema.json",
    "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json",
}


def _check_not_held(item: dict, uri: str) -> None:
    if "/render/" in uri:
        renders = item["properties"]["renders"]
        assert renders and isinstance(renders, dict)
        for render in renders.values():
            assert render["assets"] and all(a in item["assets"] for a in render["assets"])
            assert all(len(r) == 2 and r[0] < r[1] for r in render.get("rescale", []))
            assert all(isinstance(b, int) for b in render.get("bidx", []))
    else:
        xyz = [lk for lk in item["links"] if lk["rel"] == "xyz"]
        assert xyz and all("{z}" in lk["href"] and "{s}" not in lk["href"] for lk in xyz)
        assert all(lk.get("render") in item["properties"].get("renders", {}) for lk in xyz)


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
        if uri in NOT_HELD:
            _check_not_held(item, uri)
            checked.append(uri)
            continue
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
    for ext in ("projection", "raster", "eo", "processing", "file", "render"):
        assert any(f"/{ext}/" in uri for uri in checked), f"{ext} not declared/checked"


def test_derived_items_with_web_map_links_pass(
    sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a public URL the item also links the viewer's XYZ tiles (web-map-links)."""
    from rgb_assets.core.products.web import tile_url
    from rgb_assets.core.stac.viewers import add_web_map_links

    root = Path(os.environ["RGB_ASSETS_STAC_SCHEMAS_DIR"])
    store, item = produce_partition(sample_dir, "schema-wml", Month(2019, 8))
    add_web_map_links(item, "http://127.0.0.1:8080", "schema-wml", Month(2019, 8))
    checked = _validate(item.to_dict(), root)
    assert any("/web-map-links/" in uri for uri in checked)
    (link,) = [lk for lk in item.links if lk.rel == "xyz"]
    assert link.href == tile_url("http://127.0.0.1:8080", "schema-wml", Month(2019, 8))


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
