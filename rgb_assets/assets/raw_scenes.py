"""raw_scenes: search the STAC source for the AOI × month and archive what composites need."""

import time
from typing import Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from rgb_assets.assets.metadata import dashboard, partition_of, timings
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.partitions import check_month_in_range, partitions_def
from rgb_assets.resources import StacSourceResource, StorageResource
from rgb_assets.steps import archive_scenes


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
    group_name="raw",
    kinds={"stac", "cog"},
    description=__doc__,
)
def raw_scenes(
    context: AssetExecutionContext,
    config: RawScenesConfig,
    stac: StacSourceResource,
    storage: StorageResource,
) -> MaterializeResult:
    t0 = time.perf_counter()
    aoi_name, month = partition_of(context)
    check_month_in_range(month)
    store = storage.store()
    aoi = storage.aois().get(aoi_name)
    spec = stac.spec()
    raw = archive_scenes(
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
    paths = PartitionPaths(spec.key, aoi.name, month)
    return MaterializeResult(
        metadata={
            "outcome": "no data" if raw.empty else "archived",
            "scene_count": len(raw.items),
            "source": raw.source_url,
            "skipped": MetadataValue.json(raw.skipped),
            "bytes_written": raw.stats.get("bytes_written", 0),
            "item_count": raw.stats.get("found", 0),
            "archived_count": raw.stats.get("archived", 0),
            "intact_count": raw.stats.get("intact", 0),
            "skipped_count": len(raw.skipped),
            "source_verified": MetadataValue.json(raw.stats.get("source_verified", {})),
            "timings": timings(
                {k: raw.stats[k] for k in ("search_s", "total_s") if k in raw.stats}, t0
            ),
            "manifest": MetadataValue.path(store.uri(paths.manifest)),
            "archive_folder": MetadataValue.path(store.uri(paths.raw)),
            "dask_dashboard": dashboard(),
            "stats": MetadataValue.json(raw.stats),
            "items": MetadataValue.json([i.id for i in raw.items]),
        },
    )
