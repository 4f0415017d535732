"""The AOI time cube: one Zarr with a time dimension; a re-made month replaces its step in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import odc.geo.xr  # noqa: F401
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from rgb_assets.core.domain.months import Month
from rgb_assets.core.raster.timecube import GridMismatch, cube_key, write_month
from rgb_assets.core.raster.writers import write_zarr
from rgb_assets.core.storage.store import Store

GRID = GeoBox.from_bbox((589990, 5005910, 590950, 5006830), "EPSG:32634", resolution=10)


def _composite(store: Store, name: str, value: float, grid: GeoBox = GRID) -> str:
    """A monthly composite as the pipeline writes it (write_zarr), filled with ``value``."""
    shape = grid.shape
    red = np.full(shape, value, np.float32)
    red[0, 0] = np.nan
    ds = xr.Dataset(
        {
            "red": (("y", "x"), red),
            "green": (("y", "x"), red + 0.01),
            "blue": (("y", "x"), red + 0.02),
            "clear_count": (("y", "x"), np.full(shape, int(value * 100), np.uint16)),
        },
        coords=xr_coords(grid),
    )
    path = Path(store.local_path(f"composites/{name}.zarr"))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_zarr(ds, path)
    return f"composites/{name}.zarr"


def _steps(store: Store, key: str) -> list[str]:
    cube = xr.open_zarr(store.local_path(key), consolidated=True)
    return [str(t)[:7] for t in cube["time"].values]


def test_remade_month_replaces_its_step_in_place(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    key = cube_key("sentinel-2-l2a", "forest")
    jun, jul, aug = Month(2019, 6), Month(2019, 7), Month(2019, 8)

    assert write_month(store, key, jun, _composite(store, "jun", 0.05)).action == "created"
    assert write_month(store, key, aug, _composite(store, "aug", 0.07)).action == "appended"
    # July arrives late: inserted in time order.
    assert write_month(store, key, jul, _composite(store, "jul", 0.06)).action == "inserted"
    assert _steps(store, key) == ["2019-06", "2019-07", "2019-08"]

    # July re-made (new scenes): same step, new values; no other step touched.
    before = xr.open_zarr(store.local_path(key), consolidated=True).load()
    update = write_month(store, key, jul, _composite(store, "jul2", 0.10))
    assert update.action == "replaced" and update.months == ["2019-06", "2019-07", "2019-08"]
    # Re-made twice more: still exactly one July.
    write_month(store, key, jul, _composite(store, "jul3", 0.11))
    write_month(store, key, jul, _composite(store, "jul3", 0.11))
    cube = xr.open_zarr(store.local_path(key), consolidated=True)
    times = cube["time"].values
    assert len(times) == len(set(times)) == 3
    assert _steps(store, key) == ["2019-06", "2019-07", "2019-08"]
    assert float(cube["red"].sel(time="2019-07-01").values[5, 5]) == pytest.approx(0.11)
    assert int(cube["clear_count"].sel(time="2019-07-01").values[5, 5]) == 11
    assert np.isnan(cube["red"].sel(time="2019-07-01").values[0, 0])
    for m in ("2019-06", "2019-08"):
        assert np.array_equal(
            cube["red"].sel(time=m).values, before["red"].sel(time=m).values, equal_nan=True
        )

    # One open_zarr gives the cube with its CRS and grid.
    assert cube["red"].dims == ("time", "y", "x")
    assert cube.odc.geobox == GRID
    assert cube.rio.crs.to_epsg() == 32634

    # A month that became "no data" leaves the cube; the others stay.
    assert write_month(store, key, jun, None).action == "removed"
    assert _steps(store, key) == ["2019-07", "2019-08"]
    assert write_month(store, key, jun, None).action == "unchanged"


def test_month_on_another_grid_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    key = cube_key("sentinel-2-l2a", "forest")
    write_month(store, key, Month(2019, 6), _composite(store, "jun", 0.05))
    other = GeoBox.from_bbox((589990, 5005910, 590950, 5006830), "EPSG:32634", resolution=20)
    with pytest.raises(GridMismatch):
        write_month(store, key, Month(2019, 7), _composite(store, "jul", 0.05, other))
    assert _steps(store, key) == ["2019-06"]


#: 1100 x 600 px: 3 x 2 chunks of 512 px, the last ones partial.
BIG = GeoBox.from_bbox((589990, 5000000, 601990, 5011000), "EPSG:32634", resolution=10)


def _patterned(store: Store, name: str, seed: int, empty_chunk: bool = False, **encoding) -> str:
    """A composite with varied values; ``empty_chunk``: its first 512 px chunk has no data."""
    rng = np.random.default_rng(seed)
    red = rng.random(BIG.shape, dtype=np.float32)
    count = rng.integers(1, 9, BIG.shape).astype(np.uint16)
    if empty_chunk:
        red[:512, :512] = np.nan
        count[:512, :512] = 0
    ds = xr.Dataset(
        {"red": (("y", "x"), red), "clear_count": (("y", "x"), count)},
        coords=xr_coords(BIG),
    )
    key = f"composites/{name}.zarr"
    path = Path(store.local_path(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding:  # another coding than write_zarr's: the cube must decode and re-encode it
        ds = ds.rio.write_crs(BIG.crs.wkt).rio.write_transform(BIG.affine)
        for name, coding in encoding.items():
            ds[name].encoding = coding
        ds.to_zarr(path, zarr_format=2, consolidated=True)
    else:
        write_zarr(ds, path)
    return key


def _chunk_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir() if not p.name.startswith(".")}


def test_a_month_is_the_composites_encoded_chunks_copied(tmp_path: Path) -> None:
    """Created, appended and replaced steps hold the composite's chunk files byte for byte; a
    chunk the new composite lacks (all no data) leaves the step instead of keeping old data."""
    store = Store(tmp_path / "store")
    key = cube_key("sentinel-2-l2a", "big")
    jun, jul = Month(2019, 6), Month(2019, 7)
    sources = {
        "created": (jun, _patterned(store, "jun", 1)),
        "appended": (jul, _patterned(store, "jul", 2)),
        "replaced": (jul, _patterned(store, "jul2", 3, empty_chunk=True)),
    }
    for action, (month, source) in sources.items():
        assert write_month(store, key, month, source).action == action
        index = 0 if month == jun else 1
        for name in ("red", "clear_count"):
            cube_chunks = _chunk_files(store.local_path(f"{key}/{name}"))
            step = {c.partition(".")[2]: b for c, b in cube_chunks.items()
                    if c.startswith(f"{index}.")}  # fmt: skip
            assert step == _chunk_files(store.local_path(f"{source}/{name}")), (action, name)
    red = _chunk_files(store.local_path(f"{key}/red"))
    assert "1.0.0" not in red and "0.0.0" in red  # the empty chunk left July only
    cube = xr.open_zarr(store.local_path(key), consolidated=True)
    jul2 = xr.open_zarr(store.local_path(sources["replaced"][1]), consolidated=True)
    assert np.isnan(cube["red"].isel(time=1).values[:512, :512]).all()
    for name in ("red", "clear_count"):
        assert np.array_equal(cube[name].isel(time=1).values, jul2[name].values, equal_nan=True), (
            name
        )
    assert cube.odc.geobox == BIG and list(cube["time"].values.astype("M8[M]").astype(str)) == [
        "2019-06",
        "2019-07",
    ]


def test_a_composite_of_another_coding_is_decoded_into_the_cube(tmp_path: Path) -> None:
    from numcodecs import Zlib

    store = Store(tmp_path / "store")
    key = cube_key("sentinel-2-l2a", "big")
    write_month(store, key, Month(2019, 6), _patterned(store, "jun", 1))
    other = _patterned(
        store, "jul", 2, red={"compressors": (Zlib(level=1),), "chunks": (512, 512)},
        clear_count={"chunks": (512, 512)},
    )  # fmt: skip
    assert write_month(store, key, Month(2019, 7), other).action == "appended"
    cube = xr.open_zarr(store.local_path(key), consolidated=True)
    source = xr.open_zarr(store.local_path(other), consolidated=True)
    assert np.array_equal(cube["red"].isel(time=1).values, source["red"].values)
    assert np.array_equal(cube["clear_count"].isel(time=1).values, source["clear_count"].values)
    # The cube keeps its own coding: July's red chunks are not the composite's Zlib bytes.
    assert (
        _chunk_files(store.local_path(f"{key}/red"))["1.0.0"]
        != _chunk_files(store.local_path(f"{other}/red"))["0.0"]
    )
