"""derived_catalog: the composite's STAC item, linked to every raw item it was made from."""

import time

from dagster import AssetExecutionContext, MetadataValue, Output, asset

from rgb_assets.assets.automation import FOLLOW_UPSTREAM
from rgb_assets.core.archive.ingest import AOI_PROP
from rgb_assets.core.stac.catalog import StaticCatalog, composite_item, derived_collection
from rgb_assets.dask_compute import dashboard_metadata, step_dashboard
from rgb_assets.partitions import partitions_def, split_key
from rgb_assets.resources import StacSourceResource, StorageResource
from rgb_assets.resources.io_managers import CATALOGS, CatalogPartition, CompositeOutput


@asset(
    partitions_def=partitions_def,
    io_manager_key="catalog_io_manager",
    group_name="derived",
    kinds={"stac"},
    automation_condition=FOLLOW_UPSTREAM,
    description=__doc__,
)
def derived_catalog(
    context: AssetExecutionContext,
    monthly_composite: CompositeOutput,
    raw_catalog: list[str],
    stac: StacSourceResource,
    storage: StorageResource,
) -> Output[CatalogPartition]:
    t0 = time.perf_counter()
    aoi_name, month = split_key(context.partition_key)
    spec = stac.spec()
    template = derived_collection(spec)
    result, files = monthly_composite.result, monthly_composite.files
    dashboard = dashboard_metadata(step_dashboard())
    if result.no_data or files is None:
        context.log.info(f"{aoi_name} {month}: no data, nothing published")
        return Output(
            CatalogPartition(template, aoi_name, month, []),
            metadata={
                "outcome": "no data",
                "published": 0,
                "scene_count": 0,
                "timings": MetadataValue.json({"build_s": round(time.perf_counter() - t0, 3)}),
                "dask_dashboard": dashboard,
            },
        )
    aoi = storage.aois().get(aoi_name)
    used = {f"{i}__{aoi_name}" for i in result.raw_item_ids}
    raw_keys = [k for k in raw_catalog if k.rsplit("/", 1)[-1].removesuffix(".json") in used]
    store = storage.store()
    prefix, title, description = CATALOGS["derived_catalog"]
    cat = StaticCatalog(store, prefix, title, description)
    item_id = f"{aoi.name}_{month.key}_{spec.key}"
    item_key = cat.item_key(template.id, aoi.name, month, item_id)
    item = composite_item(
        spec=spec,
        aoi=aoi,
        month=month,
        bands=result.bands,
        grid=result.grid,
        files=files,
        item_key=item_key,
        raw_item_keys=raw_keys,
        stats=result.stats,
        constellation="sentinel-2" if spec.key.startswith("sentinel-2") else "landsat",
    )
    item.properties[AOI_PROP] = aoi.name
    return Output(
        CatalogPartition(template, aoi.name, month, [item]),
        metadata={
            "outcome": "published",
            "published": 1,
            "derived_from": len(raw_keys),
            "scene_count": len(result.raw_item_ids),
            "item": MetadataValue.path(store.uri(item_key)),
            "cog": MetadataValue.path(store.uri(files.cog)),
            "timings": MetadataValue.json({"build_s": round(time.perf_counter() - t0, 3)}),
            "dask_dashboard": dashboard,
        },
    )
