"""One monthly composite product: computed once, written as a new version, published by a switch.

``compute_composite`` runs the lazy engine result once into a Zarr store in a local staging
folder (on whatever Dask scheduler is active: the executor's cluster inside a run) and measures
it. ``write_version`` derives the analysis COG, visual COG and thumbnail from that store and
uploads all four into a new version folder (``PartitionPaths.product``). Nothing a reader uses
changes until ``publish_version`` rewrites the sidecar (``composite.json``, one atomic write)
to name the new version; the derived catalog item is switched after it, and only then are the
versions nobody references removed (``remove_versions``). A crash at any point leaves the old
product complete and consistent with its catalog entry; the next run clears the leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import odc.geo.xr  # noqa: F401  (registers the .odc accessor)
import xarray as xr
from affine import Affine
from odc.geo.xr import rasterize

from rgb_assets.core.archive.partition import RawScenes
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import (
    CollectionSpec,
    MissingAssetError,
    ResolvedItem,
    resolve_item,
)
from rgb_assets.core.domain.errors import MissingInputsError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.raster.compositing import CompositeOptions, median_composite
from rgb_assets.core.raster.grids import aoi_geometry, describe, output_geobox
from rgb_assets.core.raster.residue import ResidueTest
from rgb_assets.core.raster.stats import ZarrStats
from rgb_assets.core.raster.writers import write_cog, write_thumbnail, write_visual, write_zarr
from rgb_assets.core.stac.catalog import CompositeFiles
from rgb_assets.core.storage import checksums
from rgb_assets.core.storage.layout import SIDECAR, PartitionPaths, ProductPaths
from rgb_assets.core.storage.store import STALE_AFTER_S, Store, pid_alive


@dataclass
class CompositeResult:
    """A computed composite staged on local disk, with what checks and catalogs need."""

    collection: str
    aoi: str
    month: Month
    bands: tuple[str, ...]
    no_data: bool
    staging: str | None = None
    grid: dict[str, Any] = field(default_factory=dict)
    requested_grid: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    raw_item_ids: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def zarr_path(self) -> Path:
        assert self.staging
        return Path(self.staging) / "composite.zarr"


def _asset_transform(r: ResolvedItem) -> Affine | None:
    t = r.item.assets[r.bands["red"].key].extra_fields.get(
        "proj:transform"
    ) or r.item.properties.get("proj:transform")
    return Affine(*t[:6]) if t and len(t) >= 6 else None


def compute_composite(
    raw: RawScenes,
    spec: CollectionSpec,
    aoi: Aoi,
    options: CompositeOptions,
    staging_root: Path,
    *,
    crs: str | None = None,
    resolution: float | None = None,
    residue_test: ResidueTest | None = None,
) -> CompositeResult:
    """Compute the composite into ``staging_root/composite.zarr`` (the expensive step), with
    its statistics, residue figures (``residue_test``, default thresholds when None) and the
    recipe (method and mask rules) that made it."""
    result = CompositeResult(spec.key, aoi.name, raw.month, options.bands, no_data=True)
    resolved: list[ResolvedItem] = []
    missing: list[tuple[str, str]] = []
    for item in raw.items:
        try:
            resolved.append(resolve_item(item, spec))
        except MissingAssetError as e:
            result.skipped.append({"item": item.id, "reason": str(e)})
            missing.append((item.id, e.problem))
    if raw.items and not resolved:
        raise MissingInputsError(f"{spec.key} {aoi.name} {raw.month.key}", missing)
    res = float(resolution or spec.resolution)
    epsgs = {r.epsg for r in resolved}
    native = next(iter(epsgs)) if len(epsgs) == 1 else None
    probe = output_geobox(aoi, res, crs)
    align = _asset_transform(resolved[0]) if resolved and native == probe.crs.epsg else None
    geobox = output_geobox(aoi, res, crs, align_to=align) if align else probe
    result.requested_grid = describe(geobox)
    if not resolved:
        result.stats = {"observations": 0, "clear_fraction": 0.0, "bands": {}}
        return result
    t0 = time.perf_counter()
    ds = median_composite(resolved, geobox, options, aoi_geometry(aoi))
    staging_root.mkdir(parents=True, exist_ok=True)
    result.staging = str(staging_root)
    geometry = aoi_geometry(aoi)
    out_geobox = ds.odc.geobox

    def inside(ys: slice, xs: slice) -> np.ndarray:
        return rasterize(geometry, out_geobox[ys, xs]).values

    # The first pass of the statistics runs on the tiles as they are stored.
    accumulator = ZarrStats(
        options.bands, inside if options.clip_to_aoi else None, residue_test or ResidueTest()
    )
    write_zarr(ds, result.zarr_path, on_tile=accumulator.add)
    t1 = time.perf_counter()
    stored = xr.open_zarr(result.zarr_path, consolidated=True)  # lazy: metadata only
    stats = accumulator.finish(result.zarr_path)
    stats["recipe"] = options.describe()
    stats["observations"] = int(ds.attrs.get("observations", len(resolved)))
    stats["items"] = len(resolved)
    result.stats = stats
    result.grid = describe(stored.odc.geobox) | {"crs_wkt": stored.odc.geobox.crs.wkt}
    result.raw_item_ids = [r.id for r in resolved]
    result.no_data = stats["clear_pixels"] == 0
    result.timings = {"compute_s": round(t1 - t0, 3), "stats_s": round(time.perf_counter() - t1, 3)}
    return result


WITHDRAWN = "withdrawn"
#: Name prefix of a version's writer marker (``.writing-<host>-<pid>``), until it is published.
WRITING = ".writing-"


def write_version(
    result: CompositeResult, store: Store, paths: PartitionPaths, version: str
) -> CompositeFiles:
    """Write COG, visual COG and thumbnail from the staged Zarr and upload all four products
    into the version folder ``version`` (not yet published).

    When writing fails, the version folder is removed again (best effort) before the error goes
    on: its writer marker names this process, which on a persistent cluster's worker lives on,
    so no later clean-up would remove it for ``STALE_AFTER_S``.
    """
    product = paths.product(version)
    try:
        return _write_version(result, store, product, version)
    except BaseException:
        with contextlib.suppress(Exception):  # the write's own error is the one to report
            store.delete(product.folder)
        raise


def _write_version(
    result: CompositeResult, store: Store, product: ProductPaths, version: str
) -> CompositeFiles:
    store.write_text(f"{product.folder}/{WRITING}{socket.gethostname()}-{os.getpid()}", "")
    staging = Path(result.staging or "")
    ds = xr.open_zarr(result.zarr_path, consolidated=True)
    bands = list(result.bands)
    keys = product.files()
    local = {role: staging / Path(key).name for role, key in keys.items()}
    write_cog(ds, bands, local["cog"], staging)
    write_visual(ds, bands, local["visual"], staging)
    write_thumbnail(local["visual"], local["thumbnail"])
    sizes, sums = {}, {}
    for role, path in local.items():
        store.put_file(path, keys[role])
        sizes[keys[role]] = path.stat().st_size
        sums[keys[role]] = checksums.multihash_sha256(path)
    store.put_dir(result.zarr_path, product.zarr)
    return CompositeFiles(
        product.cog, product.zarr, product.visual, product.thumbnail, sizes, sums, version
    )


def publish_version(
    result: CompositeResult, files: CompositeFiles, store: Store, paths: PartitionPaths
) -> None:
    """Make ``files`` the partition's product: one atomic write of the sidecar."""
    sidecar = {"result": _jsonable(result), "files": asdict(files)}
    store.write_text(paths.sidecar, json.dumps(sidecar, indent=1))
    folder = paths.product(files.version).folder
    for name in store.listdir(folder):
        if name.startswith(WRITING):
            store.delete(f"{folder}/{name}")


def read_product(
    store: Store, paths: PartitionPaths
) -> tuple[CompositeResult, CompositeFiles] | None:
    """The published product of the partition (None: never published, or withdrawn)."""
    if not store.exists(paths.sidecar):
        return None
    d = json.loads(store.read_text(paths.sidecar))
    r = d["result"]
    r["month"] = Month.parse(r["month"])
    r["bands"] = tuple(r["bands"])
    return CompositeResult(**r), CompositeFiles(**d["files"])


def withdraw_product(store: Store, paths: PartitionPaths) -> bool:
    """Unpublish on explicit request: remove the sidecar and leave a tombstone that tells the
    derived catalog step to remove the item (its files go once no item references them)."""
    existed = store.exists(paths.sidecar)
    if existed:
        store.write_text(f"{paths.composite}/{WITHDRAWN}.json", json.dumps({"withdrawn": True}))
        store.delete(paths.sidecar)
    return existed


def is_withdrawn(store: Store, paths: PartitionPaths) -> bool:
    return store.exists(f"{paths.composite}/{WITHDRAWN}.json")


def clear_withdrawn(store: Store, paths: PartitionPaths) -> None:
    store.delete(f"{paths.composite}/{WITHDRAWN}.json")


def product_versions(store: Store, paths: PartitionPaths) -> list[str]:
    """Version folders present for the partition (published, pending or left by a crash)."""
    return [
        name
        for name in store.listdir(paths.composite)
        if not name.startswith(".") and name not in (SIDECAR, f"{WITHDRAWN}.json")
    ]


def being_written(store: Store, folder: str) -> bool:
    """Whether a live process may still write the version folder ``folder``: its writer
    marker names a live process of this host, or another host and is recent."""
    here = socket.gethostname()
    for name in store.listdir(folder):
        if not name.startswith(WRITING):
            continue
        host, _, pid = name[len(WRITING) :].rpartition("-")
        age = store.age_s(f"{folder}/{name}")
        if age is None or age > STALE_AFTER_S:
            continue
        if host != here or (pid.isdigit() and pid_alive(int(pid))):
            return True
    return False


def remove_versions(store: Store, paths: PartitionPaths, keep: set[str]) -> list[str]:
    """Delete every version folder not in ``keep`` and not being written (``being_written``);
    returns the removed versions."""
    removed = [
        v
        for v in product_versions(store, paths)
        if v not in keep and not being_written(store, paths.product(v).folder)
    ]
    for version in removed:
        store.delete(paths.product(version).folder)
    return removed


def _jsonable(result: CompositeResult) -> dict[str, Any]:
    d = asdict(result)
    d["month"] = result.month.key
    d["staging"] = None
    return d
