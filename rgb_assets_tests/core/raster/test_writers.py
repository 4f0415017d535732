"""Writers of a composite: Zarr (lazy batches and eager), analysis COG, visual COG, thumbnail."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from distributed import Client
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from PIL import Image
from rasterio.enums import ColorInterp
from rio_cogeo.cogeo import cog_validate

from rgb_assets.core.raster.writers import (
    overview_factors,
    stretch_to_byte,
    visual_bytes,
    write_cog,
    write_thumbnail,
    write_visual,
    write_zarr,
)


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


def test_zarr_write_in_a_task_on_a_real_cluster_stores_and_reports_every_tile(
    tmp_path: Path, cluster: Any
) -> None:
    """On a cluster, batches are submitted ahead of the stores (two in flight): every tile is
    still stored and reported once, whatever order the workers finish in."""
    gb = GeoBox.from_bbox((400000, 5000000, 413000, 5011000), "EPSG:32633", resolution=10)
    rng = np.random.default_rng(3)
    red = rng.random(gb.shape, dtype=np.float32)
    count = rng.integers(0, 12, gb.shape).astype(np.uint16)
    ds = xr.Dataset(
        {
            "red": (("y", "x"), da.from_array(red, chunks=400)),
            "clear_count": (("y", "x"), da.from_array(count, chunks=400)),
        },
        coords=xr_coords(gb),
    )

    def write_in_a_task(ds: xr.Dataset, path: Path) -> list[tuple[int, int, list[str]]]:
        """As a step on the dask executor runs it: in a task, seceded (sent by value)."""
        from distributed import worker_client

        seen: list[tuple[int, int, list[str]]] = []
        with worker_client():
            write_zarr(
                ds,
                path,
                tiles_per_batch=1,
                on_tile=lambda ys, xs, b: seen.append((ys.start, xs.start, sorted(b))),
            )
        return seen

    with Client(cluster.address, set_as_default=False) as client:
        seen = client.submit(write_in_a_task, ds, tmp_path / "c.zarr", pure=False).result()
    corners = [(y, x) for y in range(0, 1100, 400) for x in range(0, 1300, 400)]
    assert sorted((y, x) for y, x, _ in seen) == corners
    assert all(names == ["clear_count", "red"] for _, _, names in seen)
    back = xr.open_zarr(tmp_path / "c.zarr", consolidated=True)
    assert np.array_equal(back["red"].values, red)
    assert np.array_equal(back["clear_count"].values, count)


# -- analysis COG, visual COG, thumbnail -------------------------------------------------------
BANDS = ["red", "green", "blue"]
#: 600 x 700 px at 10 m: two 512 px blocks each way, the last ones partial.
GRID = GeoBox.from_bbox((400000, 5000000, 407000, 5006000), "EPSG:32633", resolution=10)


@pytest.fixture(scope="module")
def composite() -> xr.Dataset:
    """A small composite: random reflectance, the top 100 rows without any observation, and
    one pixel where only the blue band is missing."""
    rng = np.random.default_rng(7)
    data = {b: rng.uniform(-0.02, 0.5, GRID.shape).astype(np.float32) for b in BANDS}
    count = rng.integers(1, 9, GRID.shape).astype(np.uint16)
    for b in BANDS:
        data[b][:100] = np.nan
    count[:100] = 0
    data["blue"][300, 300] = np.nan
    coords = xr_coords(GRID)
    variables = {b: (("y", "x"), v) for b, v in data.items()}
    variables["clear_count"] = (("y", "x"), count)
    return xr.Dataset(variables, coords=coords)


def test_write_cog_is_a_valid_float32_cog_equal_to_the_dataset(
    tmp_path: Path, composite: xr.Dataset
):
    path = tmp_path / "c.tif"
    write_cog(composite, BANDS, path, tmp_path)
    ok, errors, _ = cog_validate(str(path), quiet=True)
    assert ok, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"], "staging file left behind"
    with rasterio.open(path) as src:
        assert src.count == 4
        assert src.dtypes == ("float32",) * 4
        assert np.isnan(src.nodata)
        assert src.descriptions == ("red", "green", "blue", "clear_count")
        assert src.crs.to_epsg() == 32633
        assert src.transform == GRID.affine
        assert src.shape == GRID.shape
        assert src.block_shapes[0] == (512, 512)
        assert src.overviews(1), "no overviews"
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert (structure["COMPRESSION"], structure["PREDICTOR"]) == ("ZSTD", "3")
        data = src.read()
    for i, name in enumerate([*BANDS, "clear_count"]):
        expected = composite[name].values.astype(np.float32)
        assert np.array_equal(data[i], expected, equal_nan=True), name


@pytest.mark.parametrize(
    ("width", "height", "factors"),
    [(512, 512, []), (513, 100, [2]), (2048, 2048, [2, 4]), (2105, 1999, [2, 4, 8])],
)
def test_overview_factors_halve_until_one_block(width: int, height: int, factors: list[int]):
    assert overview_factors(width, height) == factors


def test_cog_overviews_are_nodata_aware_averages(tmp_path: Path):
    # 1024^2 with 512 px blocks: one overview level, each pixel the mean of a 2 x 2 block
    # whose NaN (nodata) pixels do not count; all-NaN blocks stay NaN.
    gb = GeoBox.from_bbox((400000, 5000000, 410240, 5010240), "EPSG:32633", resolution=10)
    rng = np.random.default_rng(3)
    data = {b: rng.uniform(0, 0.5, gb.shape).astype(np.float32) for b in BANDS}
    data["red"][::2, ::2] = np.nan  # one pixel of every block missing
    data["green"][:2, :2] = np.nan  # one whole block missing
    count = rng.integers(1, 9, gb.shape).astype(np.uint16)
    ds = xr.Dataset(
        {**{b: (("y", "x"), v) for b, v in data.items()}, "clear_count": (("y", "x"), count)},
        coords=xr_coords(gb),
    )
    path = tmp_path / "c.tif"
    write_cog(ds, BANDS, path, tmp_path)
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2]
        level = src.read(out_shape=(4, 512, 512))  # served from the overview
    for i, name in enumerate([*BANDS, "clear_count"]):
        blocks = ds[name].values.astype(np.float64).reshape(512, 2, 512, 2)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN block
            expected = np.nanmean(blocks, axis=(1, 3))
        assert np.allclose(level[i], expected, rtol=1e-6, equal_nan=True), name
    assert np.isnan(level[1, 0, 0]) and not np.isnan(level[0]).any()


@pytest.mark.parametrize(
    ("refl", "byte"),
    [
        (np.nan, 0),  # nodata
        (-0.1, 1),  # below 0: clipped to the darkest valid value
        (0.0, 1),
        (0.15, 128),  # 1 + 254 * 0.5
        (0.3, 255),
        (1.2, 255),  # above VISUAL_MAX: clipped
    ],
)
def test_stretch_to_byte_known_answers(refl: float, byte: int):
    assert stretch_to_byte(np.array([refl], dtype=np.float32)).tolist() == [byte]
    assert stretch_to_byte(np.array([refl])).dtype == np.uint8


def test_visual_bytes_are_the_stretch_with_nodata_only_where_every_band_is():
    """The in-place arithmetic equals ``stretch_to_byte`` per band, including values on the
    half steps where rounding decides, and NaN is 1 beside a valid band, 0 when all are NaN."""
    rng = np.random.default_rng(11)
    rgb = rng.uniform(-0.1, 0.5, (3, 64, 300)).astype(np.float32)
    rgb[2, 0, :254] = (np.arange(254, dtype=np.float32) + 0.5) / np.float32(254) * np.float32(0.3)
    rgb[0, 1] = np.nan  # one band missing: 1 there, the others stretched
    rgb[:, 2] = np.nan  # every band missing: nodata
    got = visual_bytes(rgb)
    expected = np.stack([stretch_to_byte(band) for band in rgb])
    expected[0, 1] = 1
    assert got.dtype == np.uint8
    assert np.array_equal(got, expected)
    assert (got[:, 2] == 0).all() and (got[:, 3:] >= 1).all()


def test_write_visual_is_an_rgb_byte_cog_with_the_documented_stretch(
    tmp_path: Path, composite: xr.Dataset
):
    path = tmp_path / "v.tif"
    write_visual(composite, BANDS, path, tmp_path)
    ok, errors, _ = cog_validate(str(path), quiet=True)
    assert ok, errors
    with rasterio.open(path) as src:
        assert src.count == 3 and src.dtypes == ("uint8",) * 3
        assert src.nodata == 0
        assert src.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert src.transform == GRID.affine
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert (structure["COMPRESSION"], structure["PREDICTOR"]) == ("DEFLATE", "2")
        rgb = src.read()
    expected = np.stack([stretch_to_byte(composite[b].values) for b in BANDS])
    expected[2, 300, 300] = 1  # a partly missing pixel stays valid: its missing band is 1
    assert np.array_equal(rgb, expected)
    assert (rgb[:, :100] == 0).all(), "pixels without observations are nodata in every band"
    assert (rgb[:, 100:] >= 1).all(), "valid pixels use 1..255 only"


def test_write_thumbnail_is_a_small_png_with_transparent_nodata(
    tmp_path: Path, composite: xr.Dataset
):
    visual = tmp_path / "v.tif"
    write_visual(composite, BANDS, visual, tmp_path)
    png = tmp_path / "t.png"
    shape = write_thumbnail(visual, png)
    assert shape == (438, 512)  # 600 x 700 scaled by 512 / 700
    with Image.open(png) as img:
        assert img.format == "PNG" and img.mode == "RGBA"
        assert img.size == (512, 438)
        alpha = np.asarray(img)[..., 3]
    # Rows 0-99 of 600 (no observation) are the top 73 of 438 thumbnail rows.
    assert (alpha[:73] == 0).all()
    assert (alpha[74:] == 255).all()


def test_small_visual_keeps_its_size_in_the_thumbnail(tmp_path: Path, composite: xr.Dataset):
    small = composite.isel(y=slice(0, 120), x=slice(0, 80))
    visual = tmp_path / "v.tif"
    write_visual(small, BANDS, visual, tmp_path)
    assert write_thumbnail(visual, tmp_path / "t.png") == (120, 80)
    with Image.open(tmp_path / "t.png") as img:
        assert img.size == (80, 120)


def test_write_zarr_round_trips_an_in_memory_composite(tmp_path: Path, composite: xr.Dataset):
    """The eager path (numpy-backed variables) writes the same values, chunks and grid."""
    path = tmp_path / "c.zarr"
    write_zarr(composite, path)
    back = xr.open_zarr(path, consolidated=True)
    for name in [*BANDS, "clear_count"]:
        assert np.array_equal(back[name].values, composite[name].values, equal_nan=True), name
        assert back[name].encoding["chunks"] == (512, 512)
    assert back["clear_count"].dtype == np.uint16
    assert back.odc.geobox == GRID
