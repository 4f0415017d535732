"""Step 1: search the source for the AOI × month and archive what composites need."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

from rgb_assets.core.archive.ingest import ArchiveMode
from rgb_assets.core.archive.partition import RawScenes, archive_partition, write_manifest
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.limits import Limits
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.source import StacSource
from rgb_assets.core.storage.store import Store


def archive_scenes(
    source: StacSource,
    spec: CollectionSpec,
    aoi: Aoi,
    month: Month,
    store: Store,
    *,
    max_cloud_cover: float | None = None,
    mode: ArchiveMode = "clip",
    platforms: tuple[str, ...] | None = None,
    read_roots: tuple[str, ...] = (),
    limits: Limits | None = None,
    grid: dict[str, Any] | None = None,
    executor: Executor | None = None,
    max_concurrency: int | None = None,
) -> RawScenes:
    """Archive the partition's scenes (checksummed, intact ones reused) and write its manifest,
    which the later steps read.

    Local hrefs are read only under ``read_roots`` (and a local source's folder); with
    ``limits`` the pre-flight estimate (``grid``: the composite's crs/resolution/chunk) runs
    after the search and before anything is archived."""
    raw = archive_partition(
        source,
        spec,
        aoi,
        month,
        store,
        max_cloud_cover=max_cloud_cover,
        mode=mode,
        platforms=platforms,
        read_roots=read_roots,
        limits=limits,
        grid=grid,
        executor=executor,
        max_concurrency=max_concurrency,
    )
    write_manifest(raw, store)
    return raw
