"""raw_catalog: the partition's archived items in the raw STAC catalog, replaced on re-run."""

import time

from dagster import AssetExecutionContext, MetadataValue, Output, asset

from rgb_assets.assets.automation import FOLLOW_UPSTREAM
from rgb_assets.core.archive.partition import RawScenes
from rgb_assets.core.stac.catalog import StaticCatalog, raw_catalog_item, raw_collection
from rgb_assets.dask_compute import dashboard_metadata, step_dashboard
from rgb_assets.partitions import partitions_def
from rgb_assets.resources import StacSourceResource, StorageResource
from rgb_assets.resources.io_managers import CATALOGS, CatalogPartition


@asset(
    partitions_def=partitions_def,
    io_manager_key="catalog_io_manager",
    group_name="raw",
    kinds={"stac"},
    automation_condition=FOLLOW_UPSTREAM,
    description=__doc__,
)
def raw_catalog(
    context: AssetExecutionContext,
    raw_scenes: RawScenes,
    stac: StacSourceResource,
    storage: StorageResource,
) -> Output[CatalogPartition]:
    t0 = time.perf_counter()
    spec = stac.spec()
    source = stac.open()
    template = raw_collection(spec, raw_scenes.source_url or stac.url, source.collection_id(spec))
    items = [raw_catalog_item(i, raw_scenes.aoi) for i in raw_scenes.items]
    store = storage.store()
    cat = StaticCatalog(store, *CATALOGS["raw_catalog"])
    folder = cat.partition_dir(template.id, raw_scenes.aoi, raw_scenes.month)
    return Output(
        CatalogPartition(template, raw_scenes.aoi, raw_scenes.month, items),
        metadata={
            "scene_count": len(items),
            "skipped_count": len(raw_scenes.skipped),
            "outcome": "no data" if not items else "cataloged",
            "partition_folder": MetadataValue.path(store.uri(folder)),
            "timings": MetadataValue.json({"build_s": round(time.perf_counter() - t0, 3)}),
            "dask_dashboard": dashboard_metadata(step_dashboard()),
        },
    )
