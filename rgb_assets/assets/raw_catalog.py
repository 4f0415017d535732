"""raw_catalog: the partition's archived items in the raw STAC catalog, replaced on re-run."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from rgb_assets.assets.automation import FOLLOW_UPSTREAM
from rgb_assets.assets.metadata import catalog_metadata, partition_of
from rgb_assets.core.storage.layout import RAW_CATALOG, PartitionPaths
from rgb_assets.partitions import partitions_def
from rgb_assets.resources import CatalogsResource, StacSourceResource, StorageResource
from rgb_assets.steps import catalog_raw_scenes


@asset(
    partitions_def=partitions_def,
    deps=["raw_scenes"],
    group_name="raw",
    kinds={"stac"},
    automation_condition=FOLLOW_UPSTREAM,
    description=__doc__,
)
def raw_catalog(
    context: AssetExecutionContext,
    stac: StacSourceResource,
    storage: StorageResource,
    catalogs: CatalogsResource,
) -> MaterializeResult:
    aoi_name, month = partition_of(context)
    spec = stac.spec()
    store = storage.store()
    outcome = catalog_raw_scenes(
        store,
        spec,
        aoi_name,
        month,
        source_collection_id=stac.open().collection_id(spec),
        publish_url=catalogs.publish_url,
    )
    if outcome.outcome == "unchanged":
        context.log.info(f"{aoi_name} {month}: no archived scenes, catalog left as it was")
    metadata = catalog_metadata(store, outcome, catalogs.publish_url)
    metadata["outcome"] = "no data" if outcome.outcome == "unchanged" else outcome.outcome
    metadata["skipped_count"] = outcome.skipped_count
    folder = PartitionPaths(spec.key, aoi_name, month).catalog_partition(RAW_CATALOG, spec.key)
    metadata["partition_folder"] = MetadataValue.path(store.uri(folder))
    return MaterializeResult(metadata=metadata)
