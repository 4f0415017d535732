"""IO managers: persist each asset's value where the next step (another process) can load it.

- ``RawScenesIOManager``: the partition's archived items as an ItemCollection (``items.json``).
- ``CompositeIOManager``: the composite as Zarr, analysis COG, visual COG and PNG thumbnail.
- ``CatalogIOManager``: a partition's STAC items into the raw or derived static catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pystac
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from rgb_assets.core.archive.partition import RawScenes, read_manifest, write_manifest
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import (
    CompositeResult,
    discard_staging,
    publish_composite,
    read_published,
    unpublish_composite,
)
from rgb_assets.core.stac.catalog import CompositeFiles, StaticCatalog
from rgb_assets.core.stac.publish import StacPublisher
from rgb_assets.core.storage import layout
from rgb_assets.partitions import split_key
from rgb_assets.resources.stac_source import StacSourceResource
from rgb_assets.resources.storage import StorageResource


def _partition(context: OutputContext | InputContext) -> tuple[str, Month]:
    return split_key(context.asset_partition_key)


class RawScenesIOManager(ConfigurableIOManager):
    """Reads and writes ``raw/{collection}/{aoi}/{YYYY-MM}/items.json``."""

    storage: StorageResource
    stac: StacSourceResource

    def handle_output(self, context: OutputContext, obj: RawScenes) -> None:
        key = write_manifest(obj, self.storage.store())
        context.add_output_metadata({"manifest": MetadataValue.path(self.storage.store().uri(key))})

    def load_input(self, context: InputContext) -> RawScenes:
        aoi, month = _partition(context)
        return read_manifest(self.storage.store(), self.stac.spec().key, aoi, month)


@dataclass
class CompositeOutput:
    """What downstream assets get: the result record and where its products are (None: no data)."""

    result: CompositeResult
    files: CompositeFiles | None


class CompositeIOManager(ConfigurableIOManager):
    """Publishes Zarr + COG + visual COG + thumbnail; a no-data month removes stale products."""

    storage: StorageResource
    stac: StacSourceResource

    def handle_output(self, context: OutputContext, obj: CompositeResult) -> None:
        store = self.storage.store()
        if obj.no_data:
            removed = unpublish_composite(obj.collection, obj.aoi, obj.month, store)
            context.add_output_metadata({"outcome": "no data", "removed_stale_products": removed})
            discard_staging(obj)
            return
        try:
            files = publish_composite(obj, store)
        finally:
            discard_staging(obj)
        meta: dict[str, object] = {
            "cog": MetadataValue.path(store.uri(files.cog)),
            "zarr": MetadataValue.path(store.uri(files.zarr)),
            "visual": MetadataValue.path(store.uri(files.visual)),
            "thumbnail": MetadataValue.path(store.uri(files.thumbnail)),
            "bytes": sum(files.sizes.values()),
        }
        context.add_output_metadata(meta)

    def load_input(self, context: InputContext) -> CompositeOutput:
        aoi, month = _partition(context)
        collection = self.stac.spec().key
        published = read_published(self.storage.store(), collection, aoi, month)
        if published is None:
            empty = CompositeResult(collection, aoi, month, ("red", "green", "blue"), no_data=True)
            return CompositeOutput(empty, None)
        return CompositeOutput(*published)


@dataclass
class CatalogPartition:
    """The complete set of items of one partition in one catalog (empty: unpublish)."""

    collection: pystac.Collection
    aoi: str
    month: Month
    items: list[pystac.Item] = field(default_factory=list)


CATALOGS = {
    "raw_catalog": (layout.RAW_CATALOG, "rgb-assets raw archive", "Archived source scenes"),
    "derived_catalog": (
        layout.DERIVED_CATALOG,
        "rgb-assets derived products",
        "Monthly median RGB composites",
    ),
}


class CatalogIOManager(ConfigurableIOManager):
    """Replaces a partition's items in the static catalog named after the asset, and in the
    STAC API at ``publish_url`` when set (raw collections get a distinct id there, see
    :func:`rgb_assets.core.stac.publish.api_collection_id`)."""

    storage: StorageResource
    publish_url: str | None = None

    def _catalog(self, asset_name: str) -> StaticCatalog:
        prefix, title, description = CATALOGS[asset_name]
        return StaticCatalog(self.storage.store(), prefix, title, description)

    def handle_output(self, context: OutputContext, obj: CatalogPartition) -> None:
        cat = self._catalog(context.asset_key.path[-1])
        update = cat.replace_partition(obj.collection, obj.aoi, obj.month, obj.items)
        store = self.storage.store()
        if self.publish_url:
            kind = "raw" if context.asset_key.path[-1] == "raw_catalog" else "derived"
            with StacPublisher(self.publish_url) as publisher:
                report = publisher.replace_partition(
                    obj.collection, obj.aoi, obj.month, obj.items, kind=kind
                )
            context.add_output_metadata(
                {
                    "published_to": MetadataValue.url(self.publish_url),
                    "api_collection": report.collection,
                    "api_inserted": len(report.inserted),
                    "api_updated": len(report.updated),
                    "api_deleted": len(report.deleted),
                }
            )
        context.add_output_metadata(
            {
                "catalog": MetadataValue.path(store.uri(cat.root_key)),
                "items": len(update.item_keys),
                "item_hrefs": MetadataValue.json([store.uri(k) for k in update.item_keys]),
                "replaced_or_removed": len(update.removed),
            }
        )

    def load_input(self, context: InputContext) -> list[str]:
        """Store keys of the partition's item JSON files."""
        cat = self._catalog(context.upstream_output.asset_key.path[-1])
        aoi, month = _partition(context)
        store = self.storage.store()
        out = []
        for cid in store.listdir(cat.prefix):
            part = f"{cat.prefix}/{cid}/{aoi}/{month.key}"
            for item_id in store.listdir(part):
                key = f"{part}/{item_id}/{item_id}.json"
                if store.exists(key):
                    out.append(key)
        return out
