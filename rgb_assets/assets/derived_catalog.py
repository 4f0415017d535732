"""derived_catalog: the composite's STAC item, linked to every raw item it was made from."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from rgb_assets.assets.automation import FOLLOW_UPSTREAM
from rgb_assets.assets.metadata import catalog_metadata, partition_of
from rgb_assets.partitions import partitions_def
from rgb_assets.resources import CatalogsResource, StacSourceResource, StorageResource
from rgb_assets.steps import catalog_composite


@asset(
    partitions_def=partitions_def,
    deps=["monthly_composite", "raw_catalog"],
    group_name="derived",
    kinds={"stac"},
    automation_condition=FOLLOW_UPSTREAM,
    description=__doc__,
)
def derived_catalog(
    context: AssetExecutionContext,
    stac: StacSourceResource,
    storage: StorageResource,
    catalogs: CatalogsResource,
) -> MaterializeResult:
    aoi_name, month = partition_of(context)
    store = storage.store()
    aoi = storage.aois().get(aoi_name)
    outcome = catalog_composite(
        store,
        stac.spec(),
        aoi,
        month,
        publish_url=catalogs.publish_url,
        public_url=storage.public_url,
    )
    metadata = catalog_metadata(store, outcome, catalogs.publish_url)
    if outcome.outcome == "unchanged":
        context.log.info(f"{aoi_name} {month}: no composite published, catalog left as it was")
        metadata["outcome"] = "no data"
    metadata["published"] = len(outcome.item_keys)
    metadata["derived_from"] = outcome.derived_from
    if outcome.item_keys:
        metadata["item"] = MetadataValue.path(store.uri(outcome.item_keys[0]))
    if outcome.cog:
        metadata["cog"] = MetadataValue.path(store.uri(outcome.cog))
    return MaterializeResult(metadata=metadata)
