"""Clips of tiled GeoTIFFs copy the source's encoded tiles: the same bytes, pixels, grid,
nodata and GDAL metadata as the source's tile window, a valid COG, locally and over HTTP;
sources that do not qualify are decoded and encoded again, as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window, bounds
from rio_cogeo.cogeo import cog_validate

from rgb_assets.core.archive import tilecopy
from rgb_assets.core.archive.ingest import (
    TILE_COPY_MAX_GROWTH,
    TILE_COPY_MIN_PIXELS,
    _native_window,
    clip_to_cog,
)
from rgb_assets_tests.servers.files import file_server

H, W = 2100, 2300  # neither divides by the 256 px tiles: the last row and column are partial


def _source(path: Path, *, bands: int = 1, mask: bool = False, **creation: object) -> Path:
    """A UTM uint16 GeoTIFF with nodata, scale and offset (two processing baselines' way)."""
    rng = np.random.default_rng(7)
    data = rng.integers(1, 20000, (bands, H, W), dtype="uint16")
    data[:, :40, :] = 0  # a nodata strip at the top
    profile = dict(driver="GTiff", height=H, width=W, count=bands, dtype="uint16", nodata=0,
                   crs="EPSG:32633", transform=from_origin(500000, 5100000, 10, 10))  # fmt: skip
    profile.update(creation)
    if mask:
        profile.pop("nodata")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.scales = (0.0001,) * bands
        dst.offsets = (-0.1,) * bands
        dst.update_tags(PROCESSING_BASELINE="05.10")
        if mask:
            dst.write_mask((data[0] > 0).astype("uint8") * 255)
    return path


def _bbox(path: Path, win: Window) -> tuple[float, ...]:
    """The lon/lat bounds of ``win`` shrunk by a metre: its native window is ``win`` or the
    few pixels around it the round trip through lon/lat adds."""
    with rasterio.open(path) as src:
        left, bottom, right, top = bounds(win, src.transform)
        return transform_bounds(src.crs, "EPSG:4326", left + 1, bottom + 1, right - 1, top - 1)


TILED = {
    "cog-deflate": dict(driver="COG", compress="DEFLATE", predictor=2, blocksize=256),
    "gtiff-zstd": dict(tiled=True, blockxsize=256, blockysize=256, compress="ZSTD", predictor=2),
    "gtiff-raw": dict(tiled=True, blockxsize=256, blockysize=256),
}


def _tile_bytes(path: Path) -> dict[tuple[int, int], bytes]:
    """Encoded tiles of the first image, keyed by their (row, column) in the image."""
    out = {}
    with open(path, "rb") as fh, tifffile.TiffFile(fh) as tif:
        page = tif.pages.first
        across = -(-page.imagewidth // page.tilewidth)
        for i, (o, c) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
            fh.seek(o)
            out[divmod(i, across)] = fh.read(c)
    return out


@pytest.mark.parametrize("kind", list(TILED))
@pytest.mark.parametrize("win", [Window(300, 280, 1100, 1000), Window(1200, 1000, 1100, 1100)])
def test_clip_of_a_tiled_source_is_its_tile_window_copied(tmp_path, kind, win):
    source = _source(tmp_path / "source.tif", **TILED[kind])
    clip = tmp_path / "clip.tif"
    with rasterio.open(source) as src:
        native = _native_window(src, _bbox(source, win))
        tiles = tilecopy.widen_to_tiles(native, (256, 256), (W, H))
        assert tilecopy.growth(native, tiles) <= TILE_COPY_MAX_GROWTH
        info = clip_to_cog(str(source), _bbox(source, win), clip)
        t = src.window_transform(tiles.window)
        assert info == {
            "proj:shape": [tiles.height, tiles.width],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        }
        with rasterio.open(clip) as out:
            assert (out.crs, out.transform, out.shape) == (src.crs, t, (tiles.height, tiles.width))
            assert (out.dtypes, out.nodata) == (src.dtypes, 0)
            assert out.compression == src.compression
            assert (out.scales, out.offsets) == ((0.0001,), (-0.1,))
            assert out.tags()["PROCESSING_BASELINE"] == "05.10"
            assert out.overviews(1) == []
            np.testing.assert_array_equal(out.read(), src.read(window=tiles.window))
    # The very bytes of the source's tiles, at their place in the window.
    theirs, ours = _tile_bytes(source), _tile_bytes(clip)
    r0, c0 = tiles.row_off // 256, tiles.col_off // 256
    assert ours == {(r, c): theirs[(r + r0, c + c0)] for r, c in ours}
    valid, errors, _ = cog_validate(str(clip), quiet=True)
    assert valid, errors


@pytest.mark.parametrize(
    ("why", "creation"),
    [
        ("stripped", {}),
        ("two bands", {"bands": 2, **TILED["cog-deflate"]}),
        ("internal mask", {"mask": True, **TILED["gtiff-zstd"]}),
        (
            "too few pixels of the tiles wanted",
            {**TILED["gtiff-zstd"], "blockxsize": 1024, "blockysize": 1024},
        ),
        ("smaller than a copy is worth", TILED["gtiff-zstd"]),
    ],
)
def test_other_sources_are_decoded_to_the_window(tmp_path, why, creation):
    win = (
        Window(300, 280, 400, 500)
        if why != "too few pixels of the tiles wanted"
        else Window(300, 280, 60, 50)
    )
    source = _source(tmp_path / "source.tif", **creation)
    clip = tmp_path / "clip.tif"
    info = clip_to_cog(str(source), _bbox(source, win), clip)
    with rasterio.open(source) as src, rasterio.open(clip) as out:
        native = _native_window(src, _bbox(source, win))
        tiles = tilecopy.widen_to_tiles(native, src.block_shapes[0][::-1], (W, H))
        if why == "too few pixels of the tiles wanted":
            assert tilecopy.growth(native, tiles) > TILE_COPY_MAX_GROWTH
        else:
            assert tilecopy.growth(native, tiles) <= TILE_COPY_MAX_GROWTH or why == "stripped"
        if why == "smaller than a copy is worth":
            assert native.width * native.height < TILE_COPY_MIN_PIXELS
        assert info["proj:shape"] == [native.height, native.width] == list(out.shape)
        assert out.compression.value == "ZSTD"  # the archive's own encoding
        np.testing.assert_array_equal(out.read(), src.read(window=native))
    assert cog_validate(str(clip), quiet=True)[0]


def test_tile_copy_over_http_reads_one_range_per_tile_row(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    source = _source(folder / "source.tif", **TILED["cog-deflate"])
    win = Window(300, 280, 1100, 1000)
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    assert clip_to_cog(str(source), _bbox(source, win), local)
    with file_server(folder) as server:
        href = f"{server.url}/source.tif"
        assert clip_to_cog(href, _bbox(source, win), remote) == clip_to_cog(
            str(source), _bbox(source, win), local
        )
        gets = server.stats()["requests"]["/source.tif"]
    assert remote.read_bytes() == local.read_bytes()
    with rasterio.open(source) as src:
        rows = tilecopy.widen_to_tiles(
            _native_window(src, _bbox(source, win)), (256, 256), (W, H)
        ).height
    # GDAL's header reads, tifffile's, one per row of tiles, one tile decoded to check.
    assert gets <= 6 + -(-rows // 256), gets


def test_tile_copy_of_a_cut_download_fails_and_says_why(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    _source(folder / "source.tif", **TILED["cog-deflate"])
    with file_server(folder, cut_fraction=0.5) as server:
        tiles = tilecopy.TileWindow(0, 0, 2048, 2048, (256, 256))
        with pytest.raises(Exception, match="short read|payload is not completed"):
            tilecopy.copy_tiles(f"{server.url}/source.tif", tiles, tmp_path / "clip.tif")
    assert not (tmp_path / "clip.tif").exists()


def test_widen_to_tiles_stops_at_the_image_edge():
    tiles = tilecopy.widen_to_tiles(Window(1000, 5, 290, 10), (256, 512), (1300, 1100))
    assert (tiles.col_off, tiles.row_off, tiles.width, tiles.height) == (768, 0, 532, 512)
    assert tilecopy.growth(Window(0, 0, 10, 10), tiles) == pytest.approx(532 * 512 / 100)


def test_a_float_source_with_nan_nodata_is_copied(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.random((1, H, W), dtype="float32")
    data[:, :40, :] = np.nan
    profile = dict(driver="COG", height=H, width=W, count=1, dtype="float32", nodata=np.nan,
                   crs="EPSG:32633", transform=from_origin(500000, 5100000, 10, 10),
                   compress="DEFLATE", predictor=1, blocksize=256)  # fmt: skip
    source = tmp_path / "source.tif"
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(data)
    win = Window(0, 0, 1100, 1000)
    clip = tmp_path / "clip.tif"
    info = clip_to_cog(str(source), _bbox(source, win), clip)
    with rasterio.open(source) as src, rasterio.open(clip) as out:
        tiles = tilecopy.widen_to_tiles(_native_window(src, _bbox(source, win)), (256, 256), (W, H))
        assert info["proj:shape"] == [tiles.height, tiles.width] == list(out.shape)
        assert np.isnan(out.nodata) and out.overviews(1) == []
        np.testing.assert_array_equal(out.read(), src.read(window=tiles.window))
