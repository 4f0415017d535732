"""Steps 2 and 4: the partition's entries in the raw and derived STAC catalogs.

Each replaces the partition's items in a static catalog in the store and, with a
``publish_url``, in a Transactions-enabled STAC API. Neither ever unpublishes because a month
came back empty: the raw catalog keeps what was archived before, and the derived item is only
removed after an explicit withdrawal (see ``composite_month``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rgb_assets.core.archive.partition import read_manifest
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import (
    clear_withdrawn,
    is_withdrawn,
    read_product,
    remove_versions,
)
from rgb_assets.core.stac.catalog import (
    StaticCatalog,
    composite_item,
    derived_collection,
    raw_catalog_item,
    raw_collection,
)
from rgb_assets.core.stac.publish import CatalogKind, PublishReport, StacPublisher
from rgb_assets.core.stac.viewers import summarize_collection
from rgb_assets.core.storage import layout
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store
from rgb_assets.steps.composite import partition_lock

RAW = ("rgb-assets raw archive", "Archived source scenes")
DERIVED = ("rgb-assets derived products", "Monthly median RGB composites")


def raw_catalog(store: Store) -> StaticCatalog:
    return StaticCatalog(store, layout.RAW_CATALOG, *RAW)


def derived_catalog(store: Store) -> StaticCatalog:
    return StaticCatalog(store, layout.DERIVED_CATALOG, *DERIVED)


@dataclass
class CatalogOutcome:
    """What one catalog step did."""

    #: ``cataloged`` / ``published``, ``unchanged`` (nothing to add), or ``withdrawn``.
    outcome: str
    catalog: str
    item_keys: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    scene_count: int = 0
    #: Items the source step skipped (raw catalog).
    skipped_count: int = 0
    #: Raw items the derived item links to, and the store key of its analysis COG.
    derived_from: int = 0
    cog: str | None = None
    api: PublishReport | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _publish(
    publish_url: str | None, kind: CatalogKind, *args: object
) -> PublishReport | None:
    if not publish_url:
        return None
    with StacPublisher(publish_url) as publisher:
        return publisher.replace_partition(*args, kind=kind)  # type: ignore[arg-type]


def catalog_raw_scenes(
    store: Store,
    spec: CollectionSpec,
    aoi: str,
    month: Month,
    *,
    source_collection_id: str,
    publish_url: str | None = None,
) -> CatalogOutcome:
    """Make the partition's raw catalog items the archived scenes of its manifest."""
    t0 = time.perf_counter()
    paths = PartitionPaths(spec.key, aoi, month)
    raw = read_manifest(store, spec.key, aoi, month)
    cat = raw_catalog(store)
    if raw.empty:
        return CatalogOutcome("unchanged", cat.root_key)
    template = raw_collection(spec, raw.source_url, source_collection_id)
    items = [raw_catalog_item(i, paths) for i in raw.items]
    update = cat.replace_partition(template, aoi, month, items)
    report = _publish(publish_url, "raw", template, aoi, month, items)
    return CatalogOutcome(
        "cataloged",
        cat.root_key,
        item_keys=update.item_keys,
        removed=update.removed,
        scene_count=len(items),
        skipped_count=len(raw.skipped),
        api=report,
        timings={"build_s": round(time.perf_counter() - t0, 3)},
    )


def catalog_composite(
    store: Store,
    spec: CollectionSpec,
    aoi: Aoi,
    month: Month,
    *,
    publish_url: str | None = None,
    public_url: str | None = None,
) -> CatalogOutcome:
    """Make the partition's derived item describe the published composite, linked to the raw
    items it was made from; then drop the product versions no reader can reach any more."""
    t0 = time.perf_counter()
    paths = PartitionPaths(spec.key, aoi.name, month)
    cat = derived_catalog(store)
    template = derived_collection(spec)
    with store.lock(partition_lock(paths)):
        product = read_product(store, paths)
        if product is None:
            if not is_withdrawn(store, paths):
                return CatalogOutcome("unchanged", cat.root_key)
            update = cat.replace_partition(template, aoi.name, month, [], summarize_collection)
            report = _publish(publish_url, "derived", template, aoi.name, month, [])
            remove_versions(store, paths, keep=set())
            clear_withdrawn(store, paths)
            return CatalogOutcome(
                "withdrawn", cat.root_key, removed=update.removed, api=report
            )
        result, files = product
        raw_keys = [
            key
            for scene_id in result.raw_item_ids
            if store.exists(
                key := paths.catalog_item(
                    layout.RAW_CATALOG, spec.key, paths.raw_catalog_item_id(scene_id)
                )
            )
        ]
        item_id = paths.basename
        item = composite_item(
            spec=spec,
            aoi=aoi,
            month=month,
            bands=result.bands,
            grid=result.grid,
            files=files,
            item_id=item_id,
            item_key=paths.catalog_item(cat.prefix, template.id, item_id),
            raw_item_keys=raw_keys,
            stats=result.stats,
            constellation="sentinel-2" if spec.key.startswith("sentinel-2") else "landsat",
            public_url=public_url,
        )
        update = cat.replace_partition(template, aoi.name, month, [item], summarize_collection)
        report = _publish(publish_url, "derived", template, aoi.name, month, [item])
        remove_versions(store, paths, keep={files.version})
    return CatalogOutcome(
        "published",
        cat.root_key,
        item_keys=update.item_keys,
        removed=update.removed,
        scene_count=len(result.raw_item_ids),
        derived_from=len(raw_keys),
        cog=files.cog,
        api=report,
        timings={"build_s": round(time.perf_counter() - t0, 3)},
    )
