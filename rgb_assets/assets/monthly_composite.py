"""monthly_composite: per-pixel median reflectance per band over the month, plus clear count.

Computed on the executor's Dask cluster (all workers), staged as Zarr, then written by the
composite IO manager as Zarr, analysis COG, visual COG and thumbnail. Three blocking quality
checks gate publication to the derived catalog.
"""

import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

import rasterio
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from rgb_assets.assets.automation import FOLLOW_UPSTREAM
from rgb_assets.core.archive.partition import RawScenes
from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.products.composite import CompositeResult, make_composite
from rgb_assets.core.raster.compositing import CompositeOptions
from rgb_assets.core.raster.masking import DEFAULT_QA_FLAGS, DEFAULT_SCL_EXCLUDE, MaskRule
from rgb_assets.core.raster.stats import PLAUSIBLE_REFLECTANCE
from rgb_assets.dask_compute import cluster_compute
from rgb_assets.partitions import partitions_def, split_key
from rgb_assets.resources import StacSourceResource, StorageResource


class CompositeConfig(Config):
    crs: str | None = Field(default=None, description="Output CRS; default: the AOI's UTM zone")
    resolution: float | None = Field(
        default=None, description="Output pixel size in CRS units; default: native RGB resolution"
    )
    bands: list[str] = Field(default=["red", "green", "blue"])
    scl_exclude: list[int] = Field(
        default=list(DEFAULT_SCL_EXCLUDE), description="Sentinel-2 SCL classes masked out"
    )
    qa_flags: list[str] = Field(
        default=list(DEFAULT_QA_FLAGS), description="Landsat QA_PIXEL flags masked out"
    )
    qa_confidence: dict[str, int] = Field(
        default_factory=dict, description="QA_PIXEL confidence pairs masked at >= level (1-3)"
    )
    use_radsat: bool = Field(default=True, description="Mask QA_RADSAT-saturated pixels")
    dilation: int = Field(default=0, ge=0, le=100, description="Grow the cloud mask by N pixels")
    resampling: Literal["nearest", "bilinear", "cubic", "average"] = "nearest"
    clip_to_aoi: bool = True
    chunk: int = Field(
        default=2048,
        ge=256,
        le=8192,
        description="Tile side in pixels of one Dask task; memory per task is about "
        "time slices x chunk^2 x 7 bytes (3 uint16 bands + mask), so lower it for long months",
    )
    min_clear_fraction: float = Field(
        default=0.05, ge=0, le=1, description="Coverage check: minimum clear fraction of the AOI"
    )


def validate_bands(bands: list[str], spec: CollectionSpec) -> tuple[str, ...]:
    """The requested bands, checked before anything runs: the visual COG and thumbnail are
    3-band images, so exactly three distinct bands the collection defines."""
    unknown = [b for b in bands if b not in spec.bands]
    if unknown:
        raise InputError(
            "bands", f"{unknown} are not bands of {spec.key} (available: {', '.join(spec.bands)})"
        )
    if len(bands) != 3 or len(set(bands)) != 3:
        raise InputError(
            "bands", f"{list(bands)}: give exactly three distinct bands (red, green, blue order)"
        )
    return tuple(bands)


CHECKS = [
    AssetCheckSpec(
        "clear_coverage",
        asset="monthly_composite",
        blocking=True,
        description="Fraction of AOI pixels with at least one clear observation",
    ),
    AssetCheckSpec(
        "reflectance_range",
        asset="monthly_composite",
        blocking=True,
        description=f"1st-99th percentile reflectance within {PLAUSIBLE_REFLECTANCE} "
        "(catches a missing or doubled offset)",
    ),
    AssetCheckSpec(
        "output_grid",
        asset="monthly_composite",
        blocking=True,
        description="The written grid equals the requested one (CRS, shape, transform)",
    ),
]
composite_checks = CHECKS


def evaluate_checks(result: CompositeResult, min_clear_fraction: float) -> list[AssetCheckResult]:
    """Quality gates; a no-data month passes them all with an explicit 'no data' outcome."""
    if result.no_data:
        return [
            AssetCheckResult(check_name=c.name, passed=True, metadata={"outcome": "no data"})
            for c in CHECKS
        ]
    frac = result.stats["clear_fraction"]
    lo, hi = PLAUSIBLE_REFLECTANCE
    ranges = {b: (s.get("p1"), s.get("p99")) for b, s in result.stats["bands"].items()}
    bad = {b: r for b, r in ranges.items() if r[0] is not None and (r[0] < lo or r[1] > hi)}
    same_grid = all(
        result.grid.get(k) == result.requested_grid.get(k) for k in ("epsg", "shape", "transform")
    )
    return [
        AssetCheckResult(
            check_name="clear_coverage",
            passed=frac >= min_clear_fraction,
            severity=AssetCheckSeverity.ERROR,
            description=f"clear fraction {frac:.3f} vs minimum {min_clear_fraction:.3f}",
            metadata={"clear_fraction": frac, "minimum": min_clear_fraction},
        ),
        AssetCheckResult(
            check_name="reflectance_range",
            passed=not bad,
            severity=AssetCheckSeverity.ERROR,
            description="all bands plausible"
            if not bad
            else f"implausible reflectance (p1, p99) in {bad}: missing or doubled offset?",
            metadata={
                "p1_p99": MetadataValue.json(ranges),
                "plausible": list(PLAUSIBLE_REFLECTANCE),
            },
        ),
        AssetCheckResult(
            check_name="output_grid",
            passed=same_grid,
            severity=AssetCheckSeverity.ERROR,
            description="grid as requested" if same_grid else "written grid differs from request",
            metadata={
                "requested": MetadataValue.json(result.requested_grid),
                "written": MetadataValue.json(
                    {k: result.grid.get(k) for k in ("epsg", "shape", "transform")}
                ),
            },
        ),
    ]


@asset(
    partitions_def=partitions_def,
    io_manager_key="composite_io_manager",
    group_name="derived",
    kinds={"dask", "zarr", "cog"},
    check_specs=CHECKS,
    automation_condition=FOLLOW_UPSTREAM,
    description=__doc__,
)
def monthly_composite(
    context: AssetExecutionContext,
    config: CompositeConfig,
    raw_scenes: RawScenes,
    stac: StacSourceResource,
    storage: StorageResource,
):  # type: ignore[no-untyped-def]
    aoi_name, month = split_key(context.partition_key)
    spec = stac.spec()
    bands = validate_bands(config.bands, spec)
    aoi = storage.aois().get(aoi_name)
    rule = MaskRule(
        kind=spec.mask_kind,
        scl_exclude=tuple(config.scl_exclude),
        qa_flags=tuple(config.qa_flags),
        qa_confidence=dict(config.qa_confidence),
        use_radsat=config.use_radsat,
        dilation=config.dilation,
    )
    options = CompositeOptions(
        mask=rule,
        bands=bands,
        resampling=config.resampling,
        clip_to_aoi=config.clip_to_aoi,
        chunk=config.chunk,
    )
    staging = Path(tempfile.mkdtemp(prefix=f"rgb-composite-{aoi_name}-{month.key}-"))
    result: CompositeResult | None = None
    t0 = time.perf_counter()
    try:
        # odc-stac captures the GDAL environment with the graph: reads of an S3-compatible
        # store then find its endpoint on every Dask worker.
        with cluster_compute() as cluster, rasterio.Env(**storage.gdal_options()):
            result = make_composite(
                raw_scenes,
                spec,
                aoi,
                options,
                staging,
                crs=config.crs,
                resolution=config.resolution,
            )
    finally:
        # A staged composite is handed to the IO manager, which publishes and discards it;
        # anything else (no data, an exception) must not leave the folder behind.
        if result is None or result.staging != str(staging):
            shutil.rmtree(staging, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    outcome = "no data" if result.no_data else "composited"
    if result.no_data:
        context.log.info(f"{aoi_name} {month}: no clear observations, no composite published")
    metadata = {
        "outcome": outcome,
        "scene_count": len(raw_scenes.items),
        "observations": result.stats.get("observations", 0),
        "clear_fraction": result.stats.get("clear_fraction", 0.0),
        "grid": MetadataValue.json(result.grid or result.requested_grid),
        "band_stats": MetadataValue.json(result.stats.get("bands", {})),
        "timings": MetadataValue.json(result.timings | {"total_s": round(elapsed, 3)}),
        "dask_dashboard": MetadataValue.url(cluster.dashboard)
        if cluster.dashboard
        else "in-process",
        "dask_workers_used": len(cluster.workers_used),
        "dask_workers_total": cluster.workers_total,
        "dask_tasks": cluster.tasks,
    }
    yield Output(result, metadata=metadata)
    yield from evaluate_checks(result, config.min_clear_fraction)
