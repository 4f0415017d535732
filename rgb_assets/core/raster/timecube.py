"""An AOI's time cube: every monthly composite of the AOI in one Zarr with a ``time`` dimension.

``timecubes/{collection}/{aoi}.zarr`` (Zarr v2, consolidated) holds ``red``, ``green``, ``blue``
(float32 reflectance, NaN no data) and ``clear_count`` on dims ``(time, y, x)``, ``time`` being
each month's first instant, plus the CF/GDAL ``spatial_ref`` (``crs_wkt`` + ``GeoTransform``),
so one ``xarray.open_zarr`` gives the cube with its CRS (rioxarray and odc-geo read it).

A month is written as one time step: replaced in place (a region write) when the cube has it,
appended when it is later than every step, and inserted by rewriting the cube in time order
otherwise; a month that became "no data" is removed. So a re-made month never duplicates a step.

A month's chunks are the published composite's encoded chunks, copied as files (server-side on an
object store) when the composite's Zarr coding is the cube's, as ``write_zarr`` makes it. Else
they are decoded and re-encoded chunk by chunk in the step's own thread (Dask's synchronous
scheduler), never loaded whole and never through a cluster: inside a step on the Dask executor
the default scheduler is the cluster's, which would ship every chunk read here through its
scheduler. No thread is started either (see ``rgb_assets.cluster``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from typing import Any, Literal

import dask
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage.store import Store

GRID_COORDS = ("x", "y", "spatial_ref")
Action = Literal["created", "appended", "replaced", "inserted", "removed", "unchanged"]


class GridMismatch(ValueError):
    """A month's composite is on another grid than the cube (other CRS, resolution or extent)."""


@dataclass(frozen=True)
class CubeUpdate:
    """What writing one month did to the cube."""

    key: str
    action: Action
    months: list[str]


def cube_key(collection: str, aoi: str) -> str:
    return f"timecubes/{collection}/{aoi}.zarr"


def _time(month: Month) -> np.datetime64:
    return np.datetime64(month.start.replace(tzinfo=None), "ns")


def _target(store: Store, key: str) -> Any:
    """What ``to_zarr``/``open_zarr`` take for a store key: a local path or an fsspec mapper."""
    return str(store.local_path(key)) if store.is_local else store.fs.get_mapper(store._path(key))


def month_step(composite: xr.Dataset, month: Month) -> xr.Dataset:
    """One monthly composite (as written by ``write_zarr``) as a one-step cube slice."""
    step = composite.expand_dims(time=[_time(month)])
    step.attrs = {}
    for name in step.data_vars:
        step[name].encoding = {}
        if step[name].dtype.kind == "f":
            step[name].encoding["_FillValue"] = np.float32(np.nan)
    step["time"].encoding = {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian"}
    return step


def _same_grid(a: xr.Dataset, b: xr.Dataset) -> bool:
    return (
        a.sizes["x"] == b.sizes["x"]
        and a.sizes["y"] == b.sizes["y"]
        and np.allclose(a["x"].values, b["x"].values)
        and np.allclose(a["y"].values, b["y"].values)
        and a["spatial_ref"].attrs.get("crs_wkt") == b["spatial_ref"].attrs.get("crs_wkt")
    )


def _write_whole(cube: xr.Dataset, store: Store, key: str, source: str | None = None) -> None:
    """Write a complete cube beside the old one, then swap it into place.

    ``cube`` may read the old cube lazily: on local disk the old one stays until the swap. An
    object store has no rename, so there the cube is loaded before the old one is deleted.
    With ``source`` (a new cube of that one composite), its chunks are copied (``_fill_step``).
    """
    cube = cube.sortby("time")
    if not store.is_local and source is None:
        cube = cube.load()
    cube = cube.chunk({"time": 1, "y": 512, "x": 512})
    if store.is_local:
        final = store.local_path(key)
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        _write_cube(cube, store, f"{key.rpartition('/')[0]}/{tmp.name}", source)
        old = final.with_name(f".{final.name}.old")
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:  # object stores have no rename: the cube is rewritten in place
        store.delete(key)
        _write_cube(cube, store, key, source)


def _write_cube(cube: xr.Dataset, store: Store, key: str, source: str | None) -> None:
    target = _target(store, key)
    if source is None:
        cube.to_zarr(target, mode="w", zarr_format=2, consolidated=True)
        return
    writes = cube.to_zarr(target, mode="w", zarr_format=2, consolidated=True, compute=False)
    _fill_step(store, source, key, 0, list(cube.data_vars), writes)


def open_cube(store: Store, key: str) -> xr.Dataset | None:
    if not store.exists(f"{key}/.zmetadata"):
        return None
    return xr.open_zarr(_target(store, key), consolidated=True)


def write_month(store: Store, key: str, month: Month, composite: str | None) -> CubeUpdate:
    """Put one month's composite (the store key of its Zarr; ``None``: the month has no data:
    remove it) into the cube.

    Callers hold a lock on the cube: two months of one AOI must not write it at once.
    """
    with dask.config.set(scheduler="synchronous"):
        return _write_month(store, key, month, composite)


def _write_month(store: Store, key: str, month: Month, source: str | None) -> CubeUpdate:
    t = _time(month)
    cube = open_cube(store, key)
    if source is None:  # no data this month: its step goes
        if cube is None:
            return CubeUpdate(key, "unchanged", [])
        times = pd.DatetimeIndex(cube["time"].values)
        if t not in times:
            return CubeUpdate(key, "unchanged", _months(times))
        kept = cube.sel(time=times != t)
        if kept.sizes["time"] == 0:
            store.delete(key)
            return CubeUpdate(key, "removed", [])
        _write_whole(kept, store, key)
        return CubeUpdate(key, "removed", _months(kept["time"].values))
    step = month_step(read_composite(store, source), month)
    if cube is None:
        _write_whole(step, store, key, source)
        return CubeUpdate(key, "created", [month.key])
    times = pd.DatetimeIndex(cube["time"].values)
    if not _same_grid(cube, step):
        raise GridMismatch(
            f"{month.key}: the composite's grid differs from the time cube {key}; "
            "remove the cube to rebuild it on the new grid"
        )
    data = step.drop_vars([c for c in GRID_COORDS if c in step.coords])
    if t in times:
        i = int(times.get_loc(t))
        writes = data.to_zarr(
            _target(store, key), region={"time": slice(i, i + 1)}, zarr_format=2,
            consolidated=True, compute=False,
        )  # fmt: skip
        _fill_step(store, source, key, i, list(data.data_vars), writes)
        return CubeUpdate(key, "replaced", _months(times))
    if t > times.max():
        writes = data.to_zarr(
            _target(store, key), append_dim="time", zarr_format=2, consolidated=True,
            compute=False,
        )  # fmt: skip
        _fill_step(store, source, key, len(times), list(data.data_vars), writes)
        return CubeUpdate(key, "appended", _months(times.append(pd.DatetimeIndex([t]))))
    merged = xr.concat([cube, step], dim="time")
    _write_whole(merged, store, key)
    return CubeUpdate(key, "inserted", _months(merged["time"].values))


#: What must be equal for a composite's encoded chunks to be a cube step's, byte for byte.
_CHUNK_CODING = ("dtype", "fill_value", "order", "filters", "compressor", "zarr_format")
_CHUNK = re.compile(r"^\d+\.\d+$")


def _zarray(store: Store, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(store.read_text(f"{key}/.zarray"))
    except FileNotFoundError:
        return None


def _same_coding(store: Store, source: str, target: str, names: list[str]) -> bool:
    """Whether every variable's chunks in ``source`` (y, x) are the cube's chunks of one time
    step (1, y, x): same shape and chunking, dtype, fill value, compressor and filters."""
    for name in names:
        s, t = _zarray(store, f"{source}/{name}"), _zarray(store, f"{target}/{name}")
        if s is None or t is None or len(s["shape"]) != 2 or len(t["shape"]) != 3:
            return False
        if t["chunks"][0] != 1 or s["chunks"] != t["chunks"][1:] or s["shape"] != t["shape"][1:]:
            return False
        if any(s.get(k) != t.get(k) for k in _CHUNK_CODING):
            return False
        if s.get("dimension_separator", ".") != "." or t.get("dimension_separator", ".") != ".":
            return False
    return True


def _fill_step(
    store: Store, source: str, target: str, index: int, variables: list[Any], writes: Any
) -> None:
    """The data of time step ``index`` (its metadata is written) for ``variables``, the step's
    data variables: the composite's encoded
    chunks copied as they are when their coding is the cube's, else ``writes`` computed
    (decoded and re-encoded chunk by chunk).

    A copy is a file copy on local disk and a server-side copy on an object store, instead of
    decompressing and compressing every chunk (0.4-1.2 s at 2048^2 here, the whole tail of a
    run after its composite). A chunk the composite does not have (all no data, never written)
    is removed from the step, as a write would leave it.
    """
    names = [str(n) for n in variables]
    if not _same_coding(store, source, target, names):
        writes.compute()
        return
    sources, targets, stale = [], [], []
    for name in names:
        have = {c for c in store.listdir(f"{source}/{name}") if _CHUNK.match(c)}
        sources += [f"{source}/{name}/{c}" for c in sorted(have)]
        targets += [f"{target}/{name}/{index}.{c}" for c in sorted(have)]
        prefix = f"{index}."
        stale += [
            f"{target}/{name}/{c}"
            for c in store.listdir(f"{target}/{name}")
            if c.startswith(prefix)
            and _CHUNK.match(c[len(prefix) :])
            and c[len(prefix) :] not in have
        ]
    store.copy_files(sources, targets)
    for key in stale:
        store.delete(key)
    zarr.consolidate_metadata(_target(store, target), zarr_format=2)


def _months(times: Any) -> list[str]:
    return sorted(pd.DatetimeIndex(times).strftime("%Y-%m"))


def read_composite(store: Store, zarr_key: str) -> xr.Dataset:
    """A published monthly composite Zarr, opened lazily (its 512² chunks are the cube's)."""
    return xr.open_zarr(_target(store, zarr_key), consolidated=True)
