"""Make one monthly composite and publish its products (Zarr, COG, visual COG, thumbnail).

``make_composite`` computes the lazy engine result once, into a Zarr store in a local staging
folder (on whatever Dask scheduler is active: the executor's cluster inside a run), and
measures it. ``publish_composite`` derives the COGs and thumbnail from that store and publishes
everything to the store; a ``composite.json`` sidecar written last marks the set complete.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import odc.geo.xr  # noqa: F401  (registers the .odc accessor)
import pystac
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
from rgb_assets.core.domain.months import Month
from rgb_assets.core.raster.compositing import CompositeOptions, median_composite
from rgb_assets.core.raster.grids import aoi_geometry, describe, output_geobox
from rgb_assets.core.raster.stats import band_stats
from rgb_assets.core.raster.writers import write_cog, write_thumbnail, write_visual, write_zarr
from rgb_assets.core.stac.catalog import CompositeFiles
from rgb_assets.core.storage import checksums, layout
from rgb_assets.core.storage.store import Store

SIDECAR = "composite.json"


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


def make_composite(
    raw: RawScenes,
    spec: CollectionSpec,
    aoi: Aoi,
    options: CompositeOptions,
    staging_root: Path,
    *,
    crs: str | None = None,
    resolution: float | None = None,
) -> CompositeResult:
    """Compute the composite into ``staging_root/composite.zarr`` (the expensive step)."""
    result = CompositeResult(spec.key, aoi.name, raw.month, options.bands, no_data=True)
    resolved: list[ResolvedItem] = []
    for item in raw.items:
        try:
            resolved.append(resolve_item(item, spec))
        except MissingAssetError as e:
            result.skipped.append({"item": item.id, "reason": str(e)})
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
    write_zarr(ds, result.zarr_path)
    t1 = time.perf_counter()
    stored = xr.open_zarr(result.zarr_path, consolidated=True).load()
    inside = (
        rasterize(aoi_geometry(aoi), geobox).values
        if options.clip_to_aoi
        else np.ones(geobox.shape, bool)
    )
    stats = band_stats(stored, options.bands, inside)
    stats["observations"] = int(ds.attrs.get("observations", len(resolved)))
    stats["items"] = len(resolved)
    result.stats = stats
    result.grid = describe(stored.odc.geobox) | {"crs_wkt": stored.odc.geobox.crs.wkt}
    result.raw_item_ids = [r.id for r in resolved]
    result.no_data = stats["clear_pixels"] == 0
    result.timings = {"compute_s": round(t1 - t0, 3), "stats_s": round(time.perf_counter() - t1, 3)}
    return result


def composite_keys(collection: str, aoi: str, month: Month) -> dict[str, str]:
    d = layout.composite_dir(collection, aoi, month)
    base = layout.composite_basename(collection, aoi, month)
    return {
        "dir": d,
        "cog": f"{d}/{base}.tif",
        "zarr": f"{d}/{base}.zarr",
        "visual": f"{d}/{base}_visual.tif",
        "thumbnail": f"{d}/{base}_thumbnail.png",
        "sidecar": f"{d}/{SIDECAR}",
    }


def publish_composite(result: CompositeResult, store: Store) -> CompositeFiles:
    """Write COG, visual COG and thumbnail from the staged Zarr and publish all to the store."""
    keys = composite_keys(result.collection, result.aoi, result.month)
    staging = Path(result.staging or "")
    ds = xr.open_zarr(result.zarr_path, consolidated=True)
    bands = list(result.bands)
    local = {
        "cog": staging / Path(keys["cog"]).name,
        "visual": staging / Path(keys["visual"]).name,
        "thumbnail": staging / Path(keys["thumbnail"]).name,
    }
    write_cog(ds, bands, local["cog"], staging)
    write_visual(ds, bands, local["visual"], staging)
    write_thumbnail(local["visual"], local["thumbnail"])
    # Withdraw the sidecar before replacing anything: if publishing fails midway, the mix of
    # new and old files is never advertised as a complete product (read_published sees none).
    store.delete(keys["sidecar"])
    sizes, sums = {}, {}
    for name, path in local.items():
        store.put_file(path, keys[name])
        sizes[keys[name]] = path.stat().st_size
        sums[keys[name]] = checksums.multihash_sha256(path)
    store.put_dir(result.zarr_path, keys["zarr"])
    files = CompositeFiles(
        keys["cog"], keys["zarr"], keys["visual"], keys["thumbnail"], sizes, sums
    )
    sidecar = {"result": _jsonable(result), "files": asdict(files)}
    store.write_text(keys["sidecar"], json.dumps(sidecar, indent=1))  # last: the set is complete
    return files


def unpublish_composite(collection: str, aoi: str, month: Month, store: Store) -> bool:
    """Remove a partition's products (a re-run that finds no data replaces, never keeps stale)."""
    keys = composite_keys(collection, aoi, month)
    existed = store.exists(keys["sidecar"])
    store.delete(keys["sidecar"])
    store.delete(keys["dir"])
    return existed


def read_published(
    store: Store, collection: str, aoi: str, month: Month
) -> tuple[CompositeResult, CompositeFiles] | None:
    keys = composite_keys(collection, aoi, month)
    if not store.exists(keys["sidecar"]):
        return None
    d = json.loads(store.read_text(keys["sidecar"]))
    r = d["result"]
    r["month"] = Month.parse(r["month"])
    r["bands"] = tuple(r["bands"])
    return CompositeResult(**r), CompositeFiles(**d["files"])


def _jsonable(result: CompositeResult) -> dict[str, Any]:
    d = asdict(result)
    d["month"] = result.month.key
    d["staging"] = None
    return d


def discard_staging(result: CompositeResult) -> None:
    if result.staging:
        shutil.rmtree(result.staging, ignore_errors=True)


def items_platforms(items: list[pystac.Item]) -> list[str]:
    return sorted({str(i.properties["platform"]) for i in items if i.properties.get("platform")})
