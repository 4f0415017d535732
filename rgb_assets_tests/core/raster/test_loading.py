"""The tile loader (``core.loading``) gives exactly what ``odc.stac.load`` gives for the same
items, grid, chunks, grouping and resampling: native grid, a grid larger than the scenes
(tiles partly or not covered), a reprojection, and time slices that fuse two items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import odc.stac
import pystac
import pytest
import rasterio
from odc.geo.geobox import GeoBox

from rgb_assets.core.raster.loading import load_slices

BANDS = ["red", "green", "blue", "scl"]
RESAMPLING = {"scl": "nearest", "*": "nearest"}
DAYS = ["20190701", "20190706", "20190711"]


def _item(sample_dir: Path, day: str) -> pystac.Item:
    path = sample_dir / f"S2_L2A_RO_SAMPLE_{day}" / f"S2_L2A_RO_SAMPLE_{day}.json"
    item = pystac.Item.from_file(str(path))
    item.make_asset_hrefs_absolute()
    return item


def _with_slice(item: pystac.Item, index: int) -> pystac.Item:
    copy = item.clone()
    copy.properties["slice"] = index
    return copy


def _compare(slices: list[list[pystac.Item]], geobox: GeoBox, chunk: int, **kw: str) -> None:
    resampling = kw or RESAMPLING
    ours = load_slices(
        slices, [s[0].datetime for s in slices], BANDS, geobox, chunk, resampling
    ).compute()
    flat = [_with_slice(it, i) for i, s in enumerate(slices) for it in s]
    ref = odc.stac.load(
        flat,
        bands=BANDS,
        geobox=geobox,
        chunks={"time": -1, "x": chunk, "y": chunk},
        groupby="slice",
        resampling=resampling,
        fail_on_error=True,
    ).compute()
    for band in BANDS:
        a, b = ours[band].values, ref[band].values
        assert a.dtype == b.dtype and a.shape == b.shape, band
        np.testing.assert_array_equal(a, b, err_msg=band)
    assert list(ours["red"].dims) == ["time", "y", "x"]
    np.testing.assert_array_equal(ours.x.values, ref.x.values)
    np.testing.assert_array_equal(ours.y.values, ref.y.values)


@pytest.fixture
def items(sample_dir: Path) -> list[pystac.Item]:
    return [_item(sample_dir, d) for d in DAYS]


def _native(item: pystac.Item, pad: int = 0) -> GeoBox:
    with rasterio.open(item.assets["red"].href) as src:
        gb = GeoBox.from_rio(src)
    return gb.pad(pad) if pad else gb


def test_native_grid_with_edge_tiles(items: list[pystac.Item]) -> None:
    _compare([[it] for it in items], _native(items[0]), chunk=32)  # 100 px: 32, 32, 32, 4


def test_grid_larger_than_the_scenes(items: list[pystac.Item]) -> None:
    # 40 px of margin: some tiles partly covered, corner tiles not at all (nodata fill).
    _compare([[it] for it in items], _native(items[0], pad=40), chunk=48)


def test_reprojected_grid(items: list[pystac.Item]) -> None:
    gb = GeoBox.from_bbox((22.146, 45.201, 22.158, 45.209), "EPSG:4326", resolution=0.0001)
    gb = gb.to_crs("EPSG:32634")
    _compare([[it] for it in items], gb, chunk=40, scl="nearest", **{"*": "bilinear"})


def test_slices_fusing_two_items(items: list[pystac.Item], tmp_path: Path) -> None:
    """The first item of a slice has a no-data half: the second item fills it, as odc-stac's
    nodata fuser does."""
    first = items[0].clone()
    for key in BANDS:
        src_href = first.assets[key].href
        dst = tmp_path / f"half-{key}.tif"
        with rasterio.open(src_href) as src:
            profile = src.profile
            data = src.read(1)
        data[:, : data.shape[1] // 2] = 0  # the band's nodata
        with rasterio.open(dst, "w", **{**profile, "nodata": 0}) as out:
            out.write(data, 1)
        first.assets[key].href = str(dst)
    first.id = "half"
    _compare([[first, items[1]], [items[2]]], _native(items[0], pad=8), chunk=32)
