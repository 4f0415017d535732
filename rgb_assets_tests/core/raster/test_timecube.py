"""The AOI time cube: one Zarr with a time dimension; a re-made month replaces its step in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import odc.geo.xr  # noqa: F401
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from rgb_assets.core.domain.months import Month
from rgb_assets.core.raster.timecube import GridMismatch, cube_key, read_composite, write_month
from rgb_assets.core.raster.writers import write_zarr
from rgb_assets.core.storage.store import Store

GRID = GeoBox.from_bbox((589990, 5005910, 590950, 5006830), "EPSG:32634", resolution=10)


def _composite(store: Store, name: str, value: float, grid: GeoBox = GRID) -> xr.Dataset:
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
    return read_composite(store, f"composites/{name}.zarr")


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
