"""write_zarr computes lazy composites in batches of tiles; every batch lands where it belongs."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from rgb_assets.core.raster.writers import write_zarr


@pytest.mark.parametrize("chunk", [512, 1000, 2048])
@pytest.mark.parametrize("batch", [1, 3, None])
def test_batched_zarr_write_round_trips(tmp_path: Path, chunk: int, batch: int | None):
    # 1100 x 1300 px: edge tiles are partial; 1000 px tiles straddle the 512 px Zarr chunks.
    gb = GeoBox.from_bbox((400000, 5000000, 413000, 5011000), "EPSG:32633", resolution=10)
    rng = np.random.default_rng(chunk)
    red = rng.random(gb.shape, dtype=np.float32)
    red[:7] = np.nan
    count = rng.integers(0, 12, gb.shape).astype(np.uint16)
    ds = xr.Dataset(
        {
            "red": (("y", "x"), da.from_array(red, chunks=chunk)),
            "clear_count": (("y", "x"), da.from_array(count, chunks=chunk)),
        },
        coords=xr_coords(gb),
    )
    path = tmp_path / "c.zarr"
    write_zarr(ds, path, tiles_per_batch=batch)
    back = xr.open_zarr(path, consolidated=True)
    assert np.array_equal(back["red"].values, red, equal_nan=True)
    assert np.array_equal(back["clear_count"].values, count)
    assert back["red"].encoding["chunks"] == (512, 512)
    assert back.rio.crs.to_epsg() == 32633
    assert back.odc.geobox == gb
