"""raw_scenes: search the STAC source for the AOI × month and archive what composites need."""

import time
from typing import Any, Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field, ValidationError

from rgb_assets.assets.metadata import dashboard, partition_of, run_config_of, timings
from rgb_assets.core.archive.partition import default_concurrency
from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.dask_compute import archive_executor
from rgb_assets.partitions import check_month_in_range, partitions_def
from rgb_assets.resources import LimitsResource, StacSourceResource, StorageResource
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
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Scenes archived at once (default: 4 local, 8 HTTP, 16 object store)",
    )


#: Platforms each collection has (the ``platform`` property of its items).
KNOWN_PLATFORMS = {
    "sentinel-2-l2a": ("sentinel-2a", "sentinel-2b", "sentinel-2c"),
    "landsat-c2-l2": ("landsat-8", "landsat-9"),
}


def check_platforms(platforms: list[str] | None, spec: CollectionSpec) -> None:
    """A platform filter that can match nothing is an input error, not an empty month."""
    if platforms is None:
        return
    if not platforms:
        raise InputError("platforms", "is empty: omit it to use the collection's platforms")
    known = spec.platforms or KNOWN_PLATFORMS.get(spec.key, ())
    unknown = [p for p in platforms if p not in known]
    if unknown:
        raise InputError(
            "platforms", f"{unknown} are not platforms of {spec.key} (known: {', '.join(known)})"
        )


def composite_run_config(run_config: dict[str, Any]) -> dict[str, Any]:
    """The run's ``monthly_composite`` config, validated now, before anything is archived.

    Dagster checks only types at launch; ranges, enums and the CRS are checked by the config
    class when its step starts, which used to be after the raw scenes were archived.
    """
    from rgb_assets.assets.monthly_composite import CompositeConfig

    ops = run_config.get("ops") or {}
    section = (ops.get("monthly_composite") or {}).get("config") or {}
    try:
        return CompositeConfig(**section).model_dump()
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "config"
        raise InputError(f"ops.monthly_composite.config.{field}", first["msg"]) from None


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
    limits: LimitsResource,
) -> MaterializeResult:
    t0 = time.perf_counter()
    aoi_name, month = partition_of(context)
    check_month_in_range(month)
    spec = stac.spec()
    check_platforms(config.platforms, spec)
    grid = composite_run_config(run_config_of(context))
    store = storage.store()
    aoi = storage.aois().get(aoi_name)
    source = stac.open()
    limit = config.max_concurrency or default_concurrency(source.url)
    with archive_executor(limit) as pool:
        raw = archive_scenes(
            source,
            spec,
            aoi,
            month,
            store,
            max_cloud_cover=config.max_cloud_cover,
            mode=config.archive_mode,
            platforms=tuple(config.platforms) if config.platforms is not None else None,
            read_roots=stac.read_roots(),
            limits=limits.limits(),
            grid=grid,
            executor=pool,
            max_concurrency=limit,
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
                {k: raw.stats[k] for k in ("search_s", "archive_s", "total_s") if k in raw.stats},
                t0,
            ),
            "manifest": MetadataValue.path(store.uri(paths.manifest)),
            "archive_folder": MetadataValue.path(store.uri(paths.raw)),
            "dask_dashboard": dashboard(),
            "estimate": MetadataValue.json(raw.stats.get("estimate") or {}),
            "refused_count": raw.stats.get("refused", 0),
            "stats": MetadataValue.json(raw.stats),
            "items": MetadataValue.json([i.id for i in raw.items]),
        },
    )
