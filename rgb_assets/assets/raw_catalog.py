"""raw_catalog: the partition's archived items in the raw STAC catalog, replaced on re-run."""

from dagster import AssetExecutionContext, Output, asset

from rgb_assets.assets.automation import FOLLOW_UPSTREAM
from rgb_assets.core.archive import RawScenes
from rgb_assets.core.catalogs import raw_catalog_item, raw_collection
from rgb_assets.partitions import partitions_def
from rgb_assets.resources import StacSourceResource
from rgb_assets.resources.io_managers import CatalogPartition


@asset(
    partitions_def=partitions_def,
    io_manager_key="catalog_io_manager",
    group_name="raw",
    kinds={"stac"},
    automation_condition=FOLLOW_UPSTREAM,
    description=__doc__,
)
def raw_catalog(
    context: AssetExecutionContext, raw_scenes: RawScenes, stac: StacSourceResource
) -> Output[CatalogPartition]:
    spec = stac.spec()
    source = stac.open()
    template = raw_collection(spec, raw_scenes.source_url or stac.url, source.collection_id(spec))
    items = [raw_catalog_item(i, raw_scenes.aoi) for i in raw_scenes.items]
    return Output(
        CatalogPartition(template, raw_scenes.aoi, raw_scenes.month, items),
        metadata={"scene_count": len(items), "outcome": "no data" if not items else "cataloged"},
    )
