"""Test helper: make one AOI × month with the pure core (no Dagster) into a fresh store."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pystac

from rgb_assets.core.archive.partition import archive_partition
from rgb_assets.core.domain.aoi import AoiRegistry
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import make_composite, publish_composite
from rgb_assets.core.raster.compositing import CompositeOptions
from rgb_assets.core.raster.masking import MaskRule
from rgb_assets.core.stac.catalog import (
    StaticCatalog,
    composite_item,
    derived_collection,
    raw_catalog_item,
    raw_collection,
)
from rgb_assets.core.stac.source import open_source
from rgb_assets.core.storage import layout
from rgb_assets.core.storage.store import Store

REPO = Path(__file__).resolve().parents[1]


def produce_partition(sample_dir: Path, aoi_name: str, month: Month) -> tuple[Store, pystac.Item]:
    """Archive, catalog, composite and publish one partition; returns the store and the item."""
    store = Store(tempfile.mkdtemp(prefix="rgb-produce-"))
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    aoi, _ = AoiRegistry(store).add(aoi_name, feature)
    spec = get_collection("sentinel-2-l2a")
    source = open_source(str(sample_dir / "collection.json"))
    raw = archive_partition(source, spec, aoi, month, store)
    raw_cat = StaticCatalog(store, layout.RAW_CATALOG, "raw", "raw")
    update = raw_cat.replace_partition(
        raw_collection(spec, source.url, spec.key),
        aoi.name,
        month,
        [raw_catalog_item(i, aoi.name) for i in raw.items],
    )
    options = CompositeOptions(mask=MaskRule("scl"))
    result = make_composite(raw, spec, aoi, options, Path(tempfile.mkdtemp()))
    files = publish_composite(result, store)
    derived = StaticCatalog(store, layout.DERIVED_CATALOG, "derived", "derived")
    template = derived_collection(spec)
    item_id = f"{aoi.name}_{month.key}_{spec.key}"
    item = composite_item(
        spec=spec,
        aoi=aoi,
        month=month,
        bands=result.bands,
        grid=result.grid,
        files=files,
        item_key=derived.item_key(template.id, aoi.name, month, item_id),
        raw_item_keys=update.item_keys,
        stats=result.stats,
        constellation="sentinel-2",
    )
    derived.replace_partition(template, aoi.name, month, [item])
    return store, item
