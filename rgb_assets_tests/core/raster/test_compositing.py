"""Known answers for the compositing engine on hand-built arrays, and the engine on the real
sample month."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime

import numpy as np
import pystac
import pytest

from rgb_assets.core.domain.collection_specs import BandAsset, ResolvedItem
from rgb_assets.core.raster.compositing import (
    _count_block,
    _median_block,
    _valid_block,
    group_time_slices,
)
from rgb_assets.core.raster.masking import MaskRule, scl_clear


def _block(bands, clear, scales, offsets, nodata=0.0):
    """(B + 1, y, x): the engine's per-tile tasks on one in-memory tile (valid mask, one median
    per band, the clear count), as ``median_composite`` chains them with Dask."""
    t = clear.shape[0]
    nb = len(bands)
    valid = _valid_block(clear, *bands, nodatas=np.full((nb, t), nodata))
    s, o = np.array(scales, "float32"), np.array(offsets, "float32")
    meds = [_median_block(valid, b, scales=s, offsets=o) for b in bands]
    return np.stack([*meds, _count_block(valid).astype(np.float32)])


def test_median_odd_and_even_counts_and_zero_clear():
    # pixel (0,0): 3 clear obs → middle value; (0,1): 2 clear → mean of the two;
    # (0,2): no clear obs → NaN and count 0.
    dn = np.array(
        [[[100, 100, 100]], [[300, 200, 500]], [[200, 400, 700]], [[900, 900, 900]]], "uint16"
    )
    scl = np.array([[[4, 4, 9]], [[4, 4, 8]], [[4, 9, 3]], [[9, 9, 9]]], "uint8")
    clear = scl_clear(scl)
    out = _block([dn], clear, [1e-4] * 4, [0.0] * 4)
    assert out.shape == (2, 1, 3)
    np.testing.assert_allclose(out[0, 0, 0], 0.02, rtol=1e-6)  # median(100, 300, 200)
    np.testing.assert_allclose(out[0, 0, 1], 0.015, rtol=1e-6)  # mean(100, 200)
    assert np.isnan(out[0, 0, 2])
    assert out[1].tolist() == [[3.0, 2.0, 0.0]]


def test_nodata_is_not_an_observation():
    dn = np.array([[[0]], [[1000]], [[3000]]], "uint16")
    clear = np.ones((3, 1, 1), bool)
    out = _block([dn], clear, [1e-4] * 3, [0.0] * 3)
    np.testing.assert_allclose(out[0, 0, 0], 0.2, rtol=1e-6)
    assert out[1, 0, 0] == 2


def test_scale_and_offset_applied_per_time_slice_mixed_baselines():
    # The same reflectance 0.05 stored before (DN 500) and after baseline 04.00 (DN 1500).
    dn = np.array([[[500]], [[1500]], [[1500]]], "uint16")
    clear = np.ones((3, 1, 1), bool)
    out = _block([dn], clear, [1e-4] * 3, [0.0, -0.1, -0.1])
    np.testing.assert_allclose(out[0, 0, 0], 0.05, atol=1e-7)


def test_every_band_uses_the_same_clear_mask():
    red = np.array([[[1000]], [[0]], [[2000]]], "uint16")  # nodata in red at t=1
    green = np.array([[[1100]], [[1200]], [[1300]]], "uint16")
    clear = np.ones((3, 1, 1), bool)
    out = _block([red, green], clear, [1e-4] * 3, [0.0] * 3)
    # t=1 is not an observation for any band, so green's median ignores 1200.
    np.testing.assert_allclose(out[1, 0, 0], 0.12, rtol=1e-6)
    assert out[2, 0, 0] == 2


def test_masked_median_matches_numpy_on_random_stack():
    rng = np.random.default_rng(7)
    dn = rng.integers(1, 5000, (9, 16, 16)).astype("uint16")
    scl = rng.choice([4, 5, 8, 9, 3], (9, 16, 16)).astype("uint8")
    clear = scl_clear(scl)
    out = _block([dn], clear, [1e-4] * 9, [-0.1] * 9)
    ref = np.where(clear, dn * np.float32(1e-4) - np.float32(0.1), np.nan).astype("float32")
    with np.errstate(all="ignore"):
        expected = np.nanmedian(ref, axis=0)
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=1e-6, equal_nan=True)
    assert (out[1] == clear.sum(0)).all()


def _resolved(item_id: str, when: datetime, offset: float) -> ResolvedItem:
    item = pystac.Item(item_id, None, None, when, {})
    band = BandAsset("red", "x.tif", 0, 1e-4, offset)
    bands = {"red": band, "green": band, "blue": band}
    return ResolvedItem(item, bands, BandAsset("scl", "s.tif", 0), {}, 32634, None)


def test_time_slices_fuse_same_solar_day_but_not_different_radiometry():
    a = _resolved("a", datetime(2022, 1, 25, 9, 30, tzinfo=UTC), 0.0)
    b = _resolved("b", datetime(2022, 1, 25, 9, 31, tzinfo=UTC), 0.0)
    c = _resolved("c", datetime(2022, 1, 25, 9, 32, tzinfo=UTC), -0.1)
    d = _resolved("d", datetime(2022, 1, 30, 9, 30, tzinfo=UTC), -0.1)
    slices = group_time_slices([d, c, b, a], lon=22.0)
    assert [[r.id for r in s.items] for s in slices] == [["a", "b"], ["c"], ["d"]]


def test_mask_rule_rejects_unknown_values():
    import pytest

    from rgb_assets.core.domain.errors import InputError

    with pytest.raises(InputError, match="mask.scl_exclude"):
        MaskRule("scl", scl_exclude=(12,))
    with pytest.raises(InputError, match="mask.qa_flags"):
        MaskRule("qa_pixel", qa_flags=("clouds",))


def _nanmedian_reference(dn, valid, scales, offsets):
    refl = dn.astype("float32") * np.asarray(scales, "float32")[:, None, None]
    refl += np.asarray(offsets, "float32")[:, None, None]
    refl[~valid] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        return np.nanmedian(refl, axis=0)


@pytest.mark.parametrize("t", [1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 31])
@pytest.mark.parametrize(
    "radiometry",
    ["one-baseline", "mixed-baselines", "float-offsets"],
)
def test_selection_network_median_equals_numpy_nanmedian(t, radiometry):
    """Every observation count 0..T, every T parity, and the three key paths (uint16 keys,
    uint16 keys with a per-slice DN shift, float32 keys) against ``numpy.nanmedian``."""
    rng = np.random.default_rng(t)
    dn = rng.integers(1, 12000, (t, 40, 40)).astype("uint16")
    dn[:, 0, :] = 777  # ties
    valid = rng.random((t, 40, 40)) < rng.random((1, 40, 40))  # 0..T observations per pixel
    valid[:, 1, :] = False  # a row with no observation at all
    scales = [1e-4] * t
    offsets = {
        "one-baseline": [-0.1] * t,
        "mixed-baselines": [0.0 if j % 3 else -0.1 for j in range(t)],
        "float-offsets": [0.01234567 * (j % 2) for j in range(t)],  # not whole DN
    }[radiometry]
    got = _median_block(
        valid, dn, scales=np.array(scales, "float32"), offsets=np.array(offsets, "float32")
    )
    want = _nanmedian_reference(dn, valid, scales, offsets)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    # One float32 ulp at most: with mixed offsets the DN are converted with one radiometry.
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-7, equal_nan=True)
    if radiometry == "one-baseline":
        assert np.array_equal(got, want, equal_nan=True)  # bit-identical


def test_float_input_nan_is_not_an_observation():
    data = np.array([[[0.1]], [[np.nan]], [[0.3]], [[0.7]]], "float32")
    valid = np.ones((4, 1, 1), bool)
    got = _median_block(valid, data, scales=np.ones(4, "float32"), offsets=np.zeros(4, "float32"))
    np.testing.assert_allclose(got[0, 0], 0.3, rtol=1e-6)  # median of 0.1, 0.3, 0.7


def test_valid_block_nodata_per_band_and_slice():
    red = np.array([[[5, 0]], [[65535, 7]]], "uint16")
    green = np.array([[[9, 9]], [[9, 9]]], "uint16")
    clear = np.ones((2, 1, 2), bool)
    # slice 0: nodata 0; slice 1: nodata 65535 (a different product version).
    nodatas = np.array([[0, 65535], [0, 65535]], "float64")
    valid = _valid_block(clear, red, green, nodatas=nodatas)
    assert valid.tolist() == [[[True, False]], [[False, True]]]


# Landsat C2 L2 QA_PIXEL values as USGS writes them (LSDS-1619 table 6-3): the bits, then the
# two-bit confidences (cloud 8-9, shadow 10-11, snow 12-13, cirrus 14-15).
QA_CLEAR = 0b0101_0101_0100_0000  # 21824: clear (bit 6), every confidence low
QA_WATER = QA_CLEAR | 1 << 7  # 21952: clear water
QA_CLOUD = 0b0101_0111_0000_1000  # 22280: cloud (bit 3), high cloud confidence
QA_SHADOW = 0b0101_1101_0101_0000  # 23888: cloud shadow (bit 4)
QA_DILATED = QA_CLEAR | 1 << 1  # 21826: dilated cloud (bit 1)
QA_CIRRUS = 0b1101_0101_0100_0100  # 54596: cirrus (bit 2), high cirrus confidence
QA_SNOW = 0b0111_0101_0110_0000  # 30048: snow (bit 5)
QA_FILL = 1  # fill (bit 0)


def test_landsat_qa_pixel_scale_and_offset_known_answer():
    """Reflectance = DN * 2.75e-5 - 0.2 over the clear QA_PIXEL observations, worked by hand:
    DN 8000 → 0.02, 9000 → 0.0475, 10000 → 0.075, 11000 → 0.1025, 12000 → 0.13."""
    qa = np.array(
        [
            # px0: odd, 3 clear / px1: even, 2 clear / px2: none / px3: 4 clear / px4: nodata
            [[QA_CLEAR, QA_SHADOW, QA_FILL, QA_CLEAR, QA_CLEAR]],
            [[QA_CLEAR, QA_WATER, QA_CLOUD, QA_WATER, QA_CLEAR]],
            [[QA_CLOUD, QA_DILATED, QA_CIRRUS, QA_CLEAR, QA_CLEAR]],
            [[QA_CLEAR, QA_CLEAR, QA_SNOW, QA_WATER, QA_CLEAR]],
        ],
        "uint16",
    )
    dn = np.array(
        [
            [[8000, 30000, 0, 8000, 0]],
            [[12000, 9000, 30000, 12000, 8000]],
            [[30000, 30000, 25000, 9000, 9000]],
            [[10000, 12000, 20000, 11000, 30000]],
        ],
        "uint16",
    )
    clear = MaskRule("qa_pixel").clear(qa)
    out = _block([dn], clear, [2.75e-5] * 4, [-0.2] * 4)
    assert out.shape == (2, 1, 5)
    expected = [
        0.075,  # median(0.02, 0.13, 0.075): cloud (DN 30000) dropped
        (0.0475 + 0.13) / 2,  # shadow and dilated cloud dropped; even count → mean of two
        np.nan,  # fill, cloud, cirrus, snow: no clear observation
        (0.0475 + 0.1025) / 2,  # all four clear (land and water)
        0.0475,  # DN 0 is nodata even when QA says clear: median(0.02, 0.0475, 0.625)
    ]
    np.testing.assert_allclose(out[0, 0], expected, rtol=0, atol=1e-7, equal_nan=True)
    assert out[1, 0].tolist() == [3.0, 2.0, 0.0, 4.0, 3.0]


def test_composite_bands_are_checked_against_the_collection():
    from rgb_assets.assets.monthly_composite import validate_bands
    from rgb_assets.core.domain.collection_specs import SENTINEL2_L2A
    from rgb_assets.core.domain.errors import InputError

    assert validate_bands(["red", "green", "blue"], SENTINEL2_L2A) == ("red", "green", "blue")
    with pytest.raises(InputError, match=r"^bands: \['nir'\] are not bands of sentinel-2-l2a"):
        validate_bands(["red", "green", "nir"], SENTINEL2_L2A)
    for bad in (["red", "green"], ["red", "red", "blue"], ["red", "green", "blue", "red"]):
        with pytest.raises(InputError, match="^bands: .*exactly three distinct"):
            validate_bands(bad, SENTINEL2_L2A)


@pytest.mark.parametrize(
    ("shape", "chunk", "side"),
    [
        ((2048, 2048), 2048, 1024),  # one tile: four of 1024
        ((4096, 4096), 2048, 2048),  # four tiles already
        ((3000, 1000), 2048, 512),  # 2 x 1 tiles, then 3 x 1: 6 x 2 of 512
        ((1000, 1000), 2048, 512),  # 2 x 2 of 512
        ((100, 100), 2048, 512),  # a small AOI: one tile whatever the side, never below 512
        ((2048, 2048), 700, 700),  # a chunk already giving enough tiles stays
        ((2048, 2048), 600, 600),  # and one that cannot be halved above 512 too
    ],
)
def test_tile_side_gives_a_small_grid_several_tiles(shape, chunk, side):
    from rgb_assets.core.raster.compositing import tile_side

    assert tile_side(shape, chunk) == side


def test_the_composite_does_not_depend_on_the_tile_side(sample_dir):
    """The real sample month through the whole engine (cloud clean-up with its halo, the haze
    test, AOI clip) on the scenes' grid, in one tile and in 32 px tiles: the same composite,
    pixel for pixel."""
    import dask

    from rgb_assets.core.domain.aoi import Aoi
    from rgb_assets.core.domain.collection_specs import SENTINEL2_L2A, resolve_item
    from rgb_assets.core.products.composite import _asset_transform
    from rgb_assets.core.raster.compositing import CompositeOptions, median_composite
    from rgb_assets.core.raster.grids import aoi_geometry, output_geobox

    aoi = Aoi.create("sample", json.loads((sample_dir.parent / "sample_aoi.geojson").read_text()))
    items = []
    for item in pystac.Collection.from_file(str(sample_dir / "collection.json")).get_items():
        if item.datetime and item.datetime.strftime("%Y-%m") == "2015-08":
            item.make_asset_hrefs_absolute()
            items.append(resolve_item(item, SENTINEL2_L2A))
            item.assets["mask"] = item.assets.pop("scl")  # the engine loads roles, as archived
    # On the scenes' own grid, as ``compute_composite`` makes it. (On a grid not aligned with
    # the scenes, nearest resampling per tile moved 3 of 8832 pixels here: that is why
    # ``tile_side`` depends on the grid only, never on the cluster.)
    geobox = output_geobox(aoi, 10.0, align_to=_asset_transform(items[0]))
    assert len(items) > 1 and min(geobox.shape) > 64
    out = {}
    with dask.config.set(scheduler="threads", num_workers=2):
        for chunk in (2048, 32):
            options = CompositeOptions(mask=MaskRule("scl"), chunk=chunk)
            assert options.mask.halo and options.haze.active
            ds = median_composite(items, geobox, options, aoi_geometry(aoi))
            assert ds["red"].data.chunksize == tuple(min(chunk, n) for n in geobox.shape)
            out[chunk] = ds.compute()
    assert int(out[2048]["clear_count"].sum()) > 0
    for name in ("red", "green", "blue", "clear_count"):
        np.testing.assert_array_equal(out[32][name].values, out[2048][name].values)
