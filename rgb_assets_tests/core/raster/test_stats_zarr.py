"""Chunk-wise statistics equal the whole-array numpy ones (the previous implementation)."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from rgb_assets.core.raster.residue import ResidueTest, residue_stats
from rgb_assets.core.raster.stats import ZarrStats, band_stats_zarr
from rgb_assets.core.raster.writers import write_zarr


def _numpy_stats(bands: dict[str, np.ndarray], count: np.ndarray, inside: np.ndarray) -> dict:
    """The statistics as computed before, on whole in-memory arrays."""
    n_inside = int(inside.sum())
    clear = (count > 0) & inside
    out = {
        "pixels_in_aoi": n_inside,
        "clear_pixels": int(clear.sum()),
        "clear_fraction": round(float(clear.sum()) / n_inside, 6),
        "mean_clear_observations": round(float(count[inside].mean()), 4),
        "bands": {},
    }
    for b, arr in bands.items():
        v = arr[clear]
        p1, p99 = np.percentile(v, [1, 99])
        out["bands"][b] = {
            "minimum": round(float(v.min()), 6),
            "maximum": round(float(v.max()), 6),
            "mean": round(float(v.astype(np.float64).mean()), 6),
            "stddev": round(float(v.astype(np.float64).std()), 6),
            "valid_percent": round(100.0 * v.size / n_inside, 4),
            "p1": round(float(p1), 6),
            "p99": round(float(p99), 6),
        }
    return out


@pytest.mark.parametrize("tile", [512, 1024, 4096])
def test_tiled_statistics_equal_whole_array_numpy(tmp_path: Path, tile: int) -> None:
    gb = GeoBox.from_bbox((400000, 5000000, 425600, 5018000), "EPSG:32633", resolution=10)
    rng = np.random.default_rng(tile)
    shape = gb.shape
    count = rng.integers(0, 6, shape).astype(np.uint16)
    bands = {}
    for i, b in enumerate(("red", "green", "blue")):
        v = (rng.gamma(2.0, 0.04 + 0.01 * i, shape) - 0.01).astype(np.float32)
        v[count == 0] = np.nan
        bands[b] = v
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (shape[0] / 2.2) ** 2
    ds = xr.Dataset(
        {k: (("y", "x"), da.from_array(v, chunks=1024)) for k, v in bands.items()}
        | {"clear_count": (("y", "x"), da.from_array(count, chunks=1024))},
        coords=xr_coords(gb),
    )
    write_zarr(ds, tmp_path / "c.zarr")
    got = band_stats_zarr(
        tmp_path / "c.zarr", tuple(bands), lambda ys, xs: inside[ys, xs], tile=tile
    )
    assert got == _numpy_stats(bands, count, inside)
    # The residue figures, counted tile by tile in the same pass, equal the whole-array count.
    test = ResidueTest(min_blue=0.09, min_hot=0.03)
    with_residue = band_stats_zarr(
        tmp_path / "c.zarr", tuple(bands), lambda ys, xs: inside[ys, xs], tile=tile, residue=test
    )
    whole = residue_stats(bands["blue"], bands["red"], (count > 0) & inside, test)
    assert with_residue.pop("residue") == whole and whole["residue_pixels"] > 0
    assert with_residue == got
    everything = band_stats_zarr(tmp_path / "c.zarr", ("red",), None, tile=tile)
    assert everything["pixels_in_aoi"] == count.size
    assert (
        everything["bands"]["red"]
        == _numpy_stats({"red": bands["red"]}, count, np.ones(shape, bool))["bands"]["red"]
    )


def test_no_clear_pixel_gives_zero_valid_percent(tmp_path: Path) -> None:
    gb = GeoBox.from_bbox((400000, 5000000, 405120, 5005120), "EPSG:32633", resolution=10)
    ds = xr.Dataset(
        {
            "red": (("y", "x"), da.full(tuple(gb.shape), np.nan, dtype=np.float32, chunks=512)),
            "clear_count": (("y", "x"), da.zeros(tuple(gb.shape), dtype=np.uint16, chunks=512)),
        },
        coords=xr_coords(gb),
    )
    write_zarr(ds, tmp_path / "e.zarr")
    got = band_stats_zarr(tmp_path / "e.zarr", ("red",), None)
    assert got["clear_pixels"] == 0 and got["bands"]["red"] == {"valid_percent": 0.0}


@pytest.mark.parametrize("batch", [1, None])
def test_statistics_of_the_tiles_being_stored_equal_those_read_back(
    tmp_path: Path, batch: int | None
) -> None:
    """``compute_composite`` accumulates the first pass from ``write_zarr``'s blocks."""
    gb = GeoBox.from_bbox((400000, 5000000, 415300, 5012700), "EPSG:32633", resolution=10)
    rng = np.random.default_rng(7)
    count = rng.integers(0, 4, gb.shape).astype(np.uint16)
    bands = {}
    for b in ("red", "green", "blue"):
        v = rng.gamma(2.0, 0.05, gb.shape).astype(np.float32)
        v[count == 0] = np.nan
        bands[b] = v
    inside = np.zeros(gb.shape, bool)
    inside[100:1200, 50:1400] = True
    ds = xr.Dataset(
        {k: (("y", "x"), da.from_array(v, chunks=700)) for k, v in bands.items()}
        | {"clear_count": (("y", "x"), da.from_array(count, chunks=700))},
        coords=xr_coords(gb),
    )
    test = ResidueTest(min_blue=0.1, min_hot=0.05)
    stats = ZarrStats(tuple(bands), lambda ys, xs: inside[ys, xs], test)
    covered = np.zeros(gb.shape, np.uint8)

    def add(ys: slice, xs: slice, blocks: dict[str, np.ndarray]) -> None:
        covered[ys, xs] += 1
        stats.add(ys, xs, blocks)

    write_zarr(ds, tmp_path / "c.zarr", tiles_per_batch=batch, on_tile=add)
    assert (covered == 1).all()  # every tile once, with every variable
    got = stats.finish(tmp_path / "c.zarr")
    assert got == band_stats_zarr(
        tmp_path / "c.zarr", tuple(bands), lambda ys, xs: inside[ys, xs], residue=test
    )
    assert got["residue"]["residue_pixels"] > 0
    assert got["bands"]["red"]["p99"] == round(
        float(np.percentile(bands["red"][(count > 0) & inside], 99)), 6
    )
