"""raw_scenes: search the STAC source for the AOI × month and archive what composites need."""

import time
from typing import Literal

from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from rgb_assets.core.archive.partition import RawScenes, archive_partition
from rgb_assets.core.storage import layout
from rgb_assets.dask_compute import dashboard_metadata, step_dashboard
from rgb_assets.partitions import check_month_in_range, partitions_def, split_key
from rgb_assets.resources import StacSourceResource, StorageResource


class RawScenesConfig(Config):
    max_cloud_cover: float = Field(
        default=80.0, ge=0, le=100, description="Skip scenes with eo:cloud_cover above this (%)"
    )
    archive_mode: Literal["clip", "full"] = Field(
        default="clip",
        description="clip: AOI window of each asset in its native grid (COG); full: whole assets",
    )
    platforms: list[str] | None = Field(
        default=None, description="Restrict to these platforms (default: the collection's)"
    )


@asset(
    partitions_def=partitions_def,
    io_manager_key="raw_scenes_io_manager",
    group_name="raw",
    kinds={"stac", "cog"},
    description=__doc__,
)
def raw_scenes(
    context: AssetExecutionContext,
    config: RawScenesConfig,
    stac: StacSourceResource,
    storage: StorageResource,
) -> Output[RawScenes]:
    t0 = time.perf_counter()
    aoi_name, month = split_key(context.partition_key)
    check_month_in_range(month)
    aoi = storage.aois().get(aoi_name)
    spec = stac.spec()
    store = storage.store()
    raw = archive_partition(
        stac.open(),
        spec,
        aoi,
        month,
        store,
        max_cloud_cover=config.max_cloud_cover,
        mode=config.archive_mode,
        platforms=tuple(config.platforms) if config.platforms is not None else None,
    )
    for skip in raw.skipped:
        context.log.warning(f"skipped {skip['item']}: {skip['reason']}")
    outcome = "no data" if raw.empty else "archived"
    return Output(
        raw,
        metadata={
            "outcome": outcome,
            "scene_count": len(raw.items),
            "source": raw.source_url,
            "skipped": MetadataValue.json(raw.skipped),
            "bytes_written": raw.stats.get("bytes_written", 0),
            "item_count": raw.stats.get("found", 0),
            "archived_count": raw.stats.get("archived", 0),
            "intact_count": raw.stats.get("intact", 0),
            "skipped_count": len(raw.skipped),
            "source_verified": MetadataValue.json(raw.stats.get("source_verified", {})),
            "timings": MetadataValue.json(
                {k: raw.stats[k] for k in ("search_s", "total_s") if k in raw.stats}
                | {"step_s": round(time.perf_counter() - t0, 3)}
            ),
            "manifest": MetadataValue.path(
                store.uri(layout.raw_manifest(spec.key, aoi.name, month))
            ),
            "archive_folder": MetadataValue.path(
                store.uri(layout.raw_partition(spec.key, aoi.name, month))
            ),
            "dask_dashboard": dashboard_metadata(step_dashboard()),
            "stats": MetadataValue.json(raw.stats),
            "items": MetadataValue.json([i.id for i in raw.items]),
        },
    )
