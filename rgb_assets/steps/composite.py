"""Step 3: the monthly composite of a partition, published only when its checks pass."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field

from rgb_assets.core.archive.partition import read_manifest
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products import quality
from rgb_assets.core.products.composite import (
    CompositeResult,
    clear_withdrawn,
    compute_composite,
    publish_version,
    read_product,
    remove_versions,
    withdraw_product,
    write_version,
)
from rgb_assets.core.raster.compositing import CompositeOptions
from rgb_assets.core.stac.catalog import CompositeFiles
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store, new_staging


@dataclass
class CompositeOutcome:
    """What one composite step did."""

    result: CompositeResult
    checks: list[quality.CheckOutcome]
    #: ``published``, ``no data`` or ``blocked`` (a blocking check failed).
    outcome: str
    #: The files published by this run (None unless ``published``).
    files: CompositeFiles | None = None
    #: The product that stays published when this run published nothing.
    kept: CompositeFiles | None = None
    #: True when an empty month withdrew the previous product, as explicitly requested.
    withdrawn: bool = False
    #: Versions removed: left by crashed runs, or no longer published.
    removed_versions: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def partition_lock(paths: PartitionPaths) -> str:
    """Lock key serialising sidecar switches and version clean-up of one partition."""
    return f"{paths.composite}/.lock"


def composite_month(
    store: Store,
    spec: CollectionSpec,
    aoi: Aoi,
    month: Month,
    options: CompositeOptions,
    *,
    crs: str | None = None,
    resolution: float | None = None,
    min_clear_fraction: float = 0.05,
    residue: quality.ResidueCheck | None = None,
    withdraw_when_empty: bool = False,
    version: str | None = None,
) -> CompositeOutcome:
    """Composite the archived scenes of the partition and publish the product as a new version.

    A month with no clear observation publishes nothing and keeps the previous product, unless
    ``withdraw_when_empty`` asks to withdraw it. A composite failing a blocking check is never
    published. ``version`` names the new version folder (the run id in a Dagster run).
    """
    paths = PartitionPaths(spec.key, aoi.name, month)
    raw = read_manifest(store, spec.key, aoi.name, month)
    version = version or uuid.uuid4().hex[:12]
    staging = new_staging("rgb-composite-", f"{aoi.name}-{month.key}")
    t0 = time.perf_counter()
    try:
        residue = residue or quality.ResidueCheck()
        result = compute_composite(
            raw,
            spec,
            aoi,
            options,
            staging,
            crs=crs,
            resolution=resolution,
            residue_test=residue.test,
        )
        checks = quality.evaluate(result, min_clear_fraction, residue)
        previous = read_product(store, paths)
        kept = previous[1] if previous else None
        if result.no_data:
            withdrawn = False
            if withdraw_when_empty:
                with store.lock(partition_lock(paths)):
                    withdrawn = withdraw_product(store, paths)
            return CompositeOutcome(
                result,
                checks,
                "no data",
                kept=None if withdrawn else kept,
                withdrawn=withdrawn,
                timings=result.timings | {"total_s": round(time.perf_counter() - t0, 3)},
            )
        if quality.blocking_failures(checks):
            return CompositeOutcome(
                result,
                checks,
                "blocked",
                kept=kept,
                timings=result.timings | {"total_s": round(time.perf_counter() - t0, 3)},
            )
        t1 = time.perf_counter()
        files = write_version(result, store, paths, version)
        with store.lock(partition_lock(paths)):
            # The previously published version stays until the catalog step switches the
            # item; anything else is a leftover of a crashed or concurrent run.
            current = read_product(store, paths)
            keep = {version} | ({current[1].version} if current else set())
            publish_version(result, files, store, paths)
            clear_withdrawn(store, paths)
            removed = remove_versions(store, paths, keep)
        timings = result.timings | {
            "write_s": round(time.perf_counter() - t1, 3),
            "total_s": round(time.perf_counter() - t0, 3),
        }
        return CompositeOutcome(
            result, checks, "published", files=files, removed_versions=removed, timings=timings
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
