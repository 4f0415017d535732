"""monthly_composite: per-pixel median reflectance per band over the month, plus clear count.

Computed on the executor's Dask cluster (all workers) from the archived scenes, checked, and
published as a new version (Zarr, analysis COG, visual COG, thumbnail) only when its blocking
checks pass; a month with no clear observation keeps the previous product.
"""

from typing import Literal

import pyproj
import rasterio
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field, field_validator

from rgb_assets.assets.automation import FOLLOW_UPSTREAM
from rgb_assets.assets.metadata import partition_of, timings
from rgb_assets.assets.previews import preview_metadata
from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.products import quality
from rgb_assets.core.raster.compositing import CompositeOptions
from rgb_assets.core.raster.masking import (
    DEFAULT_DILATION,
    DEFAULT_OPENING,
    DEFAULT_QA_CLOUD,
    DEFAULT_QA_FLAGS,
    DEFAULT_SCL_CLOUD,
    DEFAULT_SCL_EXCLUDE,
    MaskRule,
)
from rgb_assets.core.raster.residue import ResidueTest
from rgb_assets.core.raster.robust import HazeRule
from rgb_assets.dask_compute import cluster_compute
from rgb_assets.partitions import partitions_def
from rgb_assets.resources import StacSourceResource, StorageResource
from rgb_assets.steps import CompositeOutcome, composite_month


class CompositeConfig(Config):
    crs: str | None = Field(default=None, description="Output CRS; default: the AOI's UTM zone")
    resolution: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Output pixel size in CRS units (> 0); default: native RGB resolution",
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
    method: str = Field(
        default="median",
        description="median | medoid (adds a source_date band) | geomedian | pNN (percentile)",
    )
    opening: int = Field(
        default=DEFAULT_OPENING,
        ge=0,
        le=20,
        description="Remove cloud speckle narrower than 2N+1 pixels before dilation (0: off)",
    )
    dilation: int = Field(
        default=DEFAULT_DILATION,
        ge=0,
        le=100,
        description="Grow the cloud/cirrus/shadow mask by N pixels (never no data; 0: off)",
    )
    scl_cloud: list[int] = Field(
        default=list(DEFAULT_SCL_CLOUD), description="SCL classes opened and dilated"
    )
    qa_cloud: list[str] = Field(
        default=list(DEFAULT_QA_CLOUD), description="QA_PIXEL flags opened and dilated"
    )
    haze_index: Literal["hot", "blue", "none"] = Field(
        default=HazeRule.index,
        description="Haze test of clear observations: hot (blue - 0.5 red), blue, none (off)",
    )
    haze_reference: Literal["median", "least_hazy"] = Field(
        default=HazeRule.reference,
        description="Reject observations whose haze index exceeds the pixel's median (with >= "
        "haze_min_obs observations) or least hazy observation by more than haze_margin",
    )
    haze_margin: float = Field(default=HazeRule.margin, ge=0, le=1)
    haze_min_obs: int = Field(default=HazeRule.min_obs, ge=2, le=255)
    haze_few: Literal["least_hazy", "nodata", "keep"] = Field(
        default=HazeRule.few,
        description="median reference, fewer than haze_min_obs observations: keep the least "
        "hazy one, leave no data, or keep all",
    )
    resampling: Literal["nearest", "bilinear", "cubic", "average"] = "nearest"
    clip_to_aoi: bool = True
    chunk: int = Field(
        default=2048,
        ge=256,
        le=8192,
        description="Largest tile side in pixels of one Dask task (an AOI of fewer than four "
        "such tiles gets halved ones, down to 512); memory per task is about "
        "time slices x chunk^2 x 7 bytes (3 uint16 bands + mask), so lower it for long months",
    )
    min_clear_fraction: float = Field(
        default=0.05, ge=0, le=1, description="Coverage check: minimum clear fraction of the AOI"
    )
    max_residue_fraction: float = Field(
        default=0.01, ge=0, le=1, description="Residue check: maximum bright, hazy fraction"
    )
    residue_blocking: bool = Field(
        default=False, description="Residue check fails with ERROR (blocks publication)"
    )
    residue_min_blue: float = Field(default=ResidueTest.min_blue, ge=0, le=2)
    residue_min_hot: float = Field(default=ResidueTest.min_hot, ge=-1, le=2)
    withdraw_when_empty: bool = Field(
        default=False,
        description="When the month has no clear observation, withdraw the composite published "
        "before (default: keep it; an empty month never unpublishes by itself)",
    )

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, value: str | None) -> str | None:
        """A CRS pyproj understands (checked when the run starts, before anything is read)."""
        if value in (None, "", "utm"):
            return value
        try:
            pyproj.CRS.from_user_input(value)
        except pyproj.exceptions.CRSError as e:
            raise ValueError(f"{value!r} is not a CRS pyproj understands: {e}") from None
        return value


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
        c.name, asset="monthly_composite", blocking=c.blocking, description=c.description
    )
    for c in quality.CHECKS
]
SEVERITY = {"error": AssetCheckSeverity.ERROR, "warn": AssetCheckSeverity.WARN}


def check_results(outcome: CompositeOutcome) -> list[AssetCheckResult]:
    """The step's quality outcomes as Dagster check results."""
    return [
        AssetCheckResult(
            check_name=c.name,
            passed=c.passed,
            severity=SEVERITY[c.severity],
            description=c.description,
            metadata={
                k: MetadataValue.json(v) if isinstance(v, dict | list) else v
                for k, v in c.metadata.items()
            },
        )
        for c in outcome.checks
    ]


def composite_options(config: CompositeConfig, spec: CollectionSpec) -> CompositeOptions:
    """The engine options of a run: bands checked before anything runs."""
    rule = MaskRule(
        kind=spec.mask_kind,
        scl_exclude=tuple(config.scl_exclude),
        qa_flags=tuple(config.qa_flags),
        qa_confidence=dict(config.qa_confidence),
        use_radsat=config.use_radsat,
        opening=config.opening,
        dilation=config.dilation,
        scl_cloud=tuple(config.scl_cloud),
        qa_cloud=tuple(config.qa_cloud),
    )
    haze = HazeRule(
        index=config.haze_index,
        reference=config.haze_reference,
        margin=config.haze_margin,
        min_obs=config.haze_min_obs,
        few=config.haze_few,
    )
    return CompositeOptions(
        mask=rule,
        bands=validate_bands(config.bands, spec),
        resampling=config.resampling,
        clip_to_aoi=config.clip_to_aoi,
        chunk=config.chunk,
        method=config.method,
        haze=haze,
    )


def residue_check(config: CompositeConfig) -> quality.ResidueCheck:
    """The residue check's settings of a run."""
    return quality.ResidueCheck(
        ResidueTest(config.residue_min_blue, config.residue_min_hot),
        config.max_residue_fraction,
        config.residue_blocking,
    )


@asset(
    partitions_def=partitions_def,
    deps=["raw_scenes"],
    group_name="derived",
    kinds={"dask", "zarr", "cog"},
    check_specs=CHECKS,
    automation_condition=FOLLOW_UPSTREAM,
    description=__doc__,
)
def monthly_composite(
    context: AssetExecutionContext,
    config: CompositeConfig,
    stac: StacSourceResource,
    storage: StorageResource,
) -> MaterializeResult:
    aoi_name, month = partition_of(context)
    spec = stac.spec()
    options = composite_options(config, spec)
    store = storage.store()
    aoi = storage.aois().get(aoi_name)
    # odc-stac captures the GDAL environment with the graph: reads of an S3-compatible
    # store then find its endpoint on every Dask worker.
    with cluster_compute() as cluster, rasterio.Env(**storage.gdal_options()):
        outcome = composite_month(
            store,
            spec,
            aoi,
            month,
            options,
            crs=config.crs,
            resolution=config.resolution,
            min_clear_fraction=config.min_clear_fraction,
            residue=residue_check(config),
            withdraw_when_empty=config.withdraw_when_empty,
            version=context.op_execution_context.run_id.split("-")[0],
        )
    result = outcome.result
    if outcome.outcome == "no data":
        kept = "kept the composite published before" if outcome.kept else "nothing published"
        if outcome.withdrawn:
            kept = "withdrew the composite published before, as configured"
        context.log.warning(f"{aoi_name} {month}: no clear observation; {kept}")
    elif outcome.outcome == "blocked":
        failed = [c.name for c in quality.blocking_failures(outcome.checks)]
        context.log.error(f"{aoi_name} {month}: checks {failed} failed, composite not published")
    files = outcome.files or outcome.kept
    metadata = {
        "outcome": outcome.outcome,
        "scene_count": len(result.raw_item_ids),
        "observations": result.stats.get("observations", 0),
        "clear_fraction": result.stats.get("clear_fraction", 0.0),
        "grid": MetadataValue.json(result.grid or result.requested_grid),
        "band_stats": MetadataValue.json(result.stats.get("bands", {})),
        "recipe": MetadataValue.json(options.describe()),
        "residue_fraction": result.stats.get("residue", {}).get("residue_fraction", 0.0),
        "timings": timings(outcome.timings),
        "withdrawn": outcome.withdrawn,
        "removed_versions": MetadataValue.json(outcome.removed_versions),
        "dask_dashboard": MetadataValue.url(cluster.dashboard)
        if cluster.dashboard
        else "in-process",
        "dask_workers_used": len(cluster.workers_used),
        "dask_workers_total": cluster.workers_total,
        "dask_tasks": cluster.tasks,
    }
    if files is not None:
        metadata |= {
            "version": files.version,
            "cog": MetadataValue.path(store.uri(files.cog)),
            "zarr": MetadataValue.path(store.uri(files.zarr)),
            "visual": MetadataValue.path(store.uri(files.visual)),
            "thumbnail": MetadataValue.path(store.uri(files.thumbnail)),
            "bytes": sum(files.sizes.values()),
        }
    metadata |= preview_metadata(
        store, aoi_name, month, outcome=outcome.outcome, files=files,
        clear_fraction=result.stats.get("clear_fraction"), scene_count=len(result.raw_item_ids),
        public_url=storage.public_url,
    )  # fmt: skip
    return MaterializeResult(metadata=metadata, check_results=check_results(outcome))
