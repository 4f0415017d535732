"""Test helper: make one AOI × month into a fresh store with the step functions (no Dagster)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pystac

from rgb_assets.core.domain.aoi import AoiRegistry
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.months import Month
from rgb_assets.core.raster.compositing import CompositeOptions
from rgb_assets.core.raster.masking import MaskRule
from rgb_assets.core.stac.source import open_source
from rgb_assets.core.storage.store import Store
from rgb_assets.steps import archive_scenes, catalog_composite, catalog_raw_scenes, composite_month

REPO = Path(__file__).resolve().parents[1]


def produce_partition(
    sample_dir: Path, aoi_name: str, month: Month, store: Store | None = None
) -> tuple[Store, pystac.Item]:
    """Run the four steps for one partition (into ``store``, default a fresh one); returns the
    store and the derived item."""
    store = store or Store(tempfile.mkdtemp(prefix="rgb-produce-"))
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    aoi, _ = AoiRegistry(store).add(aoi_name, feature)
    spec = get_collection("sentinel-2-l2a")
    source = open_source(str(sample_dir / "collection.json"))
    archive_scenes(source, spec, aoi, month, store)
    catalog_raw_scenes(store, spec, aoi.name, month, source_collection_id=spec.key)
    composite_month(store, spec, aoi, month, CompositeOptions(mask=MaskRule("scl")))
    outcome = catalog_composite(store, spec, aoi, month)
    (key,) = outcome.item_keys
    return store, pystac.Item.from_file(store.uri(key))
