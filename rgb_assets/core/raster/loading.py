"""Lazy loading of a month's items onto the output grid: (time, y, x) Dask arrays, one task per
output tile holding every time slice.

odc-stac parses the items (band aliases, ``raster:bands`` nodata and dtype, ``proj`` grids) and
odc-loader's rasterio reader does the reading (windowed read or reprojection, nodata remapping,
overviews, the captured GDAL environment); this module only builds the task graph. Each task
reads every time slice of its tile straight into the tile's buffer. ``odc.stac.load`` with the
same chunks fills each tile with nodata, reads every source into a temporary array and pastes
it, two extra passes over every pixel that cost about 7 % of the composite's time here
(``benchmarks/README.md``); its result is the same, which the tests check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dask.array as da
import numpy as np
import odc.stac
import pystac
import xarray as xr
from dask.base import tokenize
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.xr import xr_coords
from odc.loader import (
    RasterLoadParams,
    RasterSource,
    RioDriver,
    resolve_load_cfg,
    resolve_src_nodata,
)


def fill_value(cfg: RasterLoadParams) -> float | int:
    """What pixels no source covers hold: the band's nodata, else NaN (float) or 0."""
    nodata = resolve_src_nodata(cfg.fill_value, cfg)
    if nodata is not None:
        return nodata
    return np.nan if np.dtype(cfg.dtype).kind == "f" else 0


def _fill_outside(dst: np.ndarray, roi: tuple[slice, slice], value: float | int) -> None:
    """Fill ``dst`` (y, x) outside ``roi``: the part of the tile the source did not cover."""
    ys, xs = (slice(*s.indices(n)[:2]) for s, n in zip(roi, dst.shape, strict=True))
    if ys.stop <= ys.start or xs.stop <= xs.start:
        dst[...] = value
        return
    dst[: ys.start] = value
    dst[ys.stop :] = value
    dst[ys, : xs.start] = value
    dst[ys, xs.stop :] = value


def read_tile(
    sources: Sequence[Sequence[RasterSource]],
    tile: GeoBox,
    cfg: RasterLoadParams,
    env: dict[str, Any],
) -> np.ndarray:
    """(T, y, x) pixels of one tile: slice ``t`` fuses ``sources[t]`` in order, the first
    valid pixel wins (odc-loader's nodata fuser); a lone source is read in place."""
    driver = RioDriver()
    fill = fill_value(cfg)
    out = np.empty((len(sources), *tile.shape.yx), dtype=cfg.dtype)
    with driver.restore_env(env, driver.new_load(tile)) as ctx:
        for t, srcs in enumerate(sources):
            dst = out[t]
            if len(srcs) == 1:
                roi, _ = driver.open(srcs[0], ctx).read(cfg, tile, dst=dst)
                _fill_outside(dst, roi, fill)
                continue
            dst[...] = fill
            for src in srcs:
                roi, pix = driver.open(src, ctx).read(cfg, tile)
                if pix.size == 0:
                    continue
                part = dst[roi]
                missing = np.isnan(part) if np.isnan(fill) else part == fill
                np.copyto(part, pix, where=missing)
    return out


def load_slices(
    slices: Sequence[Sequence[pystac.Item]],
    times: Sequence[datetime],
    bands: Sequence[str],
    geobox: GeoBox,
    chunk: int,
    resampling: Mapping[str, str],
) -> xr.Dataset:
    """Dataset of ``bands`` as (time, y, x) Dask arrays chunked ``(T, chunk, chunk)``: time
    slice ``t`` fuses the items ``slices[t]`` (in order) onto ``geobox``.

    ``resampling`` maps band names (or ``"*"``) to a rasterio resampling name. Reads happen in
    the tasks, under the GDAL environment active here (captured like ``odc.stac.load`` does).
    """
    flat = [item for items in slices for item in items]
    parsed = list(odc.stac.parse_items(flat))
    by_slice: list[list[Any]] = []
    i = 0
    for items in slices:
        by_slice.append(parsed[i : i + len(items)])
        i += len(items)
    resolved = [[p.resolve_bands(list(bands)) for p in ps] for ps in by_slice]
    meta = {b: resolved[0][0][b].meta for b in bands}
    cfgs = resolve_load_cfg(meta, dict(resampling), fail_on_error=True)
    env = RioDriver().capture_env()
    gbt = GeoboxTiles(geobox, (chunk, chunk))
    ny, nx = gbt.shape.yx
    everywhere = {(y, x) for y in range(ny) for x in range(nx)}
    # The tiles each item touches, from its footprint, as odc-stac bins them.
    touches = [
        [
            everywhere if (geom := p.safe_geometry(geobox.crs)) is None else set(gbt.tiles(geom))
            for p in ps
        ]
        for ps in by_slice
    ]
    data_vars = {}
    for band in bands:
        cfg = cfgs[band]
        assert isinstance(cfg, RasterLoadParams)
        uris = [[src[band].uri for src in rs] for rs in resolved]
        name = f"load-{band}-{tokenize(uris, geobox, chunk, cfg, env)}"
        dsk: dict[Any, Any] = {}
        for iy in range(ny):
            for ix in range(nx):
                srcs = [
                    [src[band] for src, seen in zip(rs, ts, strict=True) if (iy, ix) in seen]
                    for rs, ts in zip(resolved, touches, strict=True)
                ]
                dsk[(name, 0, iy, ix)] = (read_tile, srcs, gbt[iy, ix], cfg, env)
        chunks = ((len(slices),), *gbt.chunks)
        array = da.Array(dsk, name, chunks=chunks, dtype=cfg.dtype)
        data_vars[band] = xr.DataArray(
            array,
            dims=("time", "y", "x"),
            attrs={"nodata": cfg.fill_value} if cfg.fill_value is not None else {},
        )
    coords = xr_coords(geobox)
    stamps = [np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "ns") for t in times]
    coords["time"] = xr.DataArray(np.array(stamps), dims=("time",))
    return xr.Dataset(data_vars, coords=coords)
