"""Mask decoding on hand-built arrays whose answers follow from the product specifications.

QA_PIXEL values are assembled from the USGS Collection 2 Level-2 bit layout (LSDS-1619, table 6-3)
rather than copied as magic numbers, so a test failure points at the bit that is misread; the
real codes seen in USGS scenes (21824, 22280, ...) are checked to equal those assemblies.
"""

from __future__ import annotations

import numpy as np
import pytest

from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.raster.masking import (
    DEFAULT_SCL_EXCLUDE,
    MaskRule,
    dilate_invalid,
    qa_pixel_clear,
    qa_radsat_clear,
    scl_clear,
)

# --- USGS Collection 2 QA_PIXEL layout, written out independently of the module under test ---
FILL = 1 << 0
DILATED_CLOUD = 1 << 1
CIRRUS = 1 << 2
CLOUD = 1 << 3
CLOUD_SHADOW = 1 << 4
SNOW = 1 << 5
CLEAR = 1 << 6
WATER = 1 << 7
NONE, LOW, MEDIUM, HIGH = 0, 1, 2, 3


def conf(cloud: int = LOW, shadow: int = LOW, snow: int = LOW, cirrus: int = LOW) -> int:
    """Two-bit confidence fields: cloud bits 8-9, shadow 10-11, snow/ice 12-13, cirrus 14-15."""
    return cloud << 8 | shadow << 10 | snow << 12 | cirrus << 14


CLEAR_LAND = CLEAR | conf()
CLEAR_WATER = CLEAR | WATER | conf()
HIGH_CLOUD = CLOUD | conf(cloud=HIGH)
CLOUD_HIGH_CIRRUS = CLOUD | CIRRUS | conf(cloud=HIGH, cirrus=HIGH)
# USGS sets the "clear" bit on shadow pixels (clear means "not cloud"); the shadow bit must win.
SHADOW_CODE = CLOUD_SHADOW | CLEAR | conf(shadow=HIGH)
SNOW_CODE = SNOW | CLEAR | conf(snow=HIGH)
DILATED_CODE = DILATED_CLOUD | conf()


def test_real_qa_codes_match_bit_layout() -> None:
    """The codes that dominate real Landsat 8 scenes decode to what the layout says."""
    assert CLEAR_LAND == 21824
    assert CLEAR_WATER == 21952
    assert HIGH_CLOUD == 22280
    assert CLOUD_HIGH_CIRRUS == 55052
    assert SHADOW_CODE == 23888
    assert SNOW_CODE == 30048
    assert DILATED_CODE == 21762


@pytest.mark.parametrize(
    ("code", "clear"),
    [
        (CLEAR_LAND, True),
        (CLEAR_WATER, True),
        (HIGH_CLOUD, False),
        (CLOUD_HIGH_CIRRUS, False),
        (SHADOW_CODE, False),
        (SNOW_CODE, False),
        (DILATED_CODE, False),
        (FILL, False),
        (CIRRUS | CLEAR | conf(cirrus=HIGH), False),
        # Medium cloud confidence without the cloud bit is clear unless asked otherwise.
        (CLEAR | conf(cloud=MEDIUM), True),
    ],
)
def test_qa_pixel_default_flags(code: int, clear: bool) -> None:
    qa = np.array([code], dtype=np.uint16)
    assert qa_pixel_clear(qa).tolist() == [clear]
    assert MaskRule("qa_pixel").clear(qa).tolist() == [clear]


def test_qa_pixel_shadow_by_bits_of_23888() -> None:
    """23888 = shadow(4) + clear(6) + cloud conf low + shadow conf high: masked only for shadow."""
    qa = np.array([23888], dtype=np.uint16)
    bits = [b for b in range(16) if 23888 >> b & 1]
    assert bits == [4, 6, 8, 10, 11, 12, 14]  # shadow, clear, conf: cloud 01, shadow 11, ...
    assert [23888 >> b & 0b11 for b in (8, 10, 12, 14)] == [LOW, HIGH, LOW, LOW]
    assert not qa_pixel_clear(qa)[0]
    without_shadow = tuple(f for f in MaskRule("qa_pixel").qa_flags if f != "cloud_shadow")
    assert qa_pixel_clear(qa, without_shadow)[0]
    assert not qa_pixel_clear(qa, (), {"cloud_shadow": HIGH})[0]


def test_qa_pixel_custom_flags() -> None:
    """Only the requested bits mask: dropping 'snow' keeps snow, 'water' can be added."""
    qa = np.array([SNOW_CODE, CLEAR_WATER, HIGH_CLOUD, CLEAR_LAND], dtype=np.uint16)
    assert qa_pixel_clear(qa, ("cloud",)).tolist() == [True, True, False, True]
    assert qa_pixel_clear(qa, ("water", "cloud")).tolist() == [True, False, False, True]
    assert qa_pixel_clear(qa, ()).tolist() == [True, True, True, True]


def test_qa_pixel_confidence_pair() -> None:
    """``{"cloud": 2}`` drops medium and high cloud confidence, whatever the single bits say."""
    levels = [NONE, LOW, MEDIUM, HIGH]
    qa = np.array([CLEAR | conf(cloud=lv) for lv in levels], dtype=np.uint16)
    assert qa_pixel_clear(qa, (), {"cloud": MEDIUM}).tolist() == [True, True, False, False]
    assert qa_pixel_clear(qa, (), {"cloud": HIGH}).tolist() == [True, True, True, False]
    assert qa_pixel_clear(qa, (), {"cloud": LOW}).tolist() == [True, False, False, False]
    rule = MaskRule("qa_pixel", qa_confidence={"cloud": MEDIUM})
    assert rule.clear(qa).tolist() == [True, True, False, False]
    # Each field reads its own two bits: high cirrus confidence does not look like cloud.
    cirrus_only = np.array([CLEAR | conf(cloud=NONE, cirrus=HIGH)], dtype=np.uint16)
    assert qa_pixel_clear(cirrus_only, (), {"cloud": MEDIUM})[0]
    assert not qa_pixel_clear(cirrus_only, (), {"cirrus": MEDIUM})[0]


def test_qa_pixel_keeps_shape_and_accepts_wider_ints() -> None:
    """Loaders may hand over int32/float blocks (e.g. after reprojection); the bits must survive."""
    qa = np.array([[CLEAR_LAND, HIGH_CLOUD], [FILL, CLEAR_WATER]], dtype=np.int32)
    out = qa_pixel_clear(qa)
    assert out.shape == (2, 2) and out.dtype == bool
    assert out.tolist() == [[True, False], [False, True]]


# --- QA_RADSAT -------------------------------------------------------------------------------


def radsat(*oli_bands: int) -> int:
    """QA_RADSAT for Landsat 8/9 OLI: bit n-1 set when band n is saturated."""
    value = 0
    for band in oli_bands:
        value |= 1 << (band - 1)
    return value


def test_qa_radsat_rgb_bits() -> None:
    """Blue, green, red are OLI bands 2, 3, 4; saturation elsewhere does not drop the pixel."""
    values = [0, radsat(2), radsat(3), radsat(4), radsat(1), radsat(5), radsat(6, 7), radsat(2, 5)]
    rs = np.array(values, dtype=np.uint16)
    assert qa_radsat_clear(rs).tolist() == [True, False, False, False, True, True, True, False]
    assert qa_radsat_clear(rs, ("red",)).tolist() == [True, True, True, False] + [True] * 3 + [True]
    assert qa_radsat_clear(rs, ("blue",)).tolist() == [True, False] + [True] * 5 + [False]


# --- Sentinel-2 SCL ------------------------------------------------------------------------


def test_scl_default_exclusion() -> None:
    """No data, defective, shadow, cloud medium/high, cirrus and snow masked; the rest kept."""
    scl = np.arange(12, dtype=np.uint8)
    clear = scl_clear(scl)
    assert sorted(scl[~clear].tolist()) == [0, 1, 3, 8, 9, 10, 11]
    assert sorted(scl[clear].tolist()) == [2, 4, 5, 6, 7]
    assert tuple(sorted(DEFAULT_SCL_EXCLUDE)) == (0, 1, 3, 8, 9, 10, 11)
    assert MaskRule("scl").clear(scl).tolist() == clear.tolist()


def test_scl_custom_exclusion() -> None:
    """A user keeping snow and thin cirrus but dropping water gets exactly that."""
    scl = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rule = MaskRule("scl", scl_exclude=(0, 1, 3, 6, 8, 9))
    clear = rule.clear(scl)
    assert clear.shape == (3, 4)
    assert sorted(scl[~clear].tolist()) == [0, 1, 3, 6, 8, 9]
    assert sorted(scl[clear].tolist()) == [2, 4, 5, 7, 10, 11]


# --- MaskRule validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "fmask"}, "mask.kind"),
        ({"kind": "scl", "scl_exclude": (0, 12)}, "mask.scl_exclude"),
        ({"kind": "qa_pixel", "qa_flags": ("cloud", "haze")}, "mask.qa_flags"),
        ({"kind": "qa_pixel", "qa_confidence": {"cloud": 4}}, "mask.qa_confidence"),
        ({"kind": "qa_pixel", "qa_confidence": {"aerosol": 2}}, "mask.qa_confidence"),
        ({"kind": "scl", "dilation": -1}, "mask.dilation"),
    ],
)
def test_mask_rule_rejects_bad_input(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        MaskRule(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


# --- Dilation --------------------------------------------------------------------------------


def single_masked(shape: tuple[int, ...], y: int, x: int) -> np.ndarray:
    clear = np.ones(shape, dtype=bool)
    clear[..., y, x] = False
    return clear


@pytest.mark.parametrize("pixels", [1, 2])
def test_dilate_single_pixel_grows_to_square(pixels: int) -> None:
    """One cloudy pixel becomes a (2p+1)² masked square: cloud edges are rarely flagged."""
    out = dilate_invalid(single_masked((9, 9), 4, 4), pixels)
    expected = np.ones((9, 9), dtype=bool)
    expected[4 - pixels : 5 + pixels, 4 - pixels : 5 + pixels] = False
    assert (~out).sum() == (2 * pixels + 1) ** 2
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("pixels", "side"), [(1, 2), (2, 3)])
def test_dilate_clips_at_corner(pixels: int, side: int) -> None:
    out = dilate_invalid(single_masked((6, 6), 0, 0), pixels)
    expected = np.ones((6, 6), dtype=bool)
    expected[:side, :side] = False
    np.testing.assert_array_equal(out, expected)


def test_dilate_clips_at_edge() -> None:
    out = dilate_invalid(single_masked((5, 7), 2, 6), 2)
    expected = np.ones((5, 7), dtype=bool)
    expected[0:5, 4:7] = False
    np.testing.assert_array_equal(out, expected)


def test_dilate_only_spatial_axes() -> None:
    """A cloud in one acquisition must not spread to the same place in other acquisitions."""
    clear = np.ones((3, 5, 5), dtype=bool)
    clear[1, 2, 2] = False
    out = dilate_invalid(clear, 1)
    assert out[0].all() and out[2].all()
    assert (~out[1]).sum() == 9 and not out[1, 1:4, 1:4].any()


def test_dilate_zero_and_oversized() -> None:
    clear = single_masked((4, 4), 1, 2)
    np.testing.assert_array_equal(dilate_invalid(clear, 0), clear)
    assert not dilate_invalid(clear, 10).any()
    assert dilate_invalid(clear, 1).dtype == bool


def test_dilate_matches_brute_force() -> None:
    """Separable running maximum equals the Chebyshev-distance definition on a random mask."""
    rng = np.random.default_rng(0)
    clear = rng.random((13, 17)) > 0.05
    for pixels in (1, 2, 3):
        bad = ~clear
        expected = np.zeros_like(bad)
        for y, x in zip(*np.nonzero(bad), strict=True):
            y0, x0 = max(0, y - pixels), max(0, x - pixels)
            expected[y0 : y + pixels + 1, x0 : x + pixels + 1] = True
        np.testing.assert_array_equal(~dilate_invalid(clear, pixels), expected)


# --- Clean-up acts on clouds only --------------------------------------------------------------


def test_dilation_grows_clouds_but_never_no_data() -> None:
    """SCL 0 (no data) along a scene edge stays exactly where it is; a cloud (9) grows by the
    dilation, and the clear pixels beside the no-data edge are kept."""
    scl = np.full((9, 9), 4, np.uint8)
    scl[:, :2] = 0  # out of the footprint
    scl[6, 6] = 9
    scl[6, 7] = 9  # a 2-pixel cloud (survives no opening of 0)
    rule = MaskRule("scl", opening=0, dilation=1)
    clear = rule.cleaned_clear(scl)
    expected = np.ones((9, 9), bool)
    expected[:, :2] = False
    expected[5:8, 5:9] = False
    np.testing.assert_array_equal(clear, expected)
    # Column 2, next to no data, is clear: before, the whole invalid mask was dilated.
    assert clear[:, 2].all()
    assert not dilate_invalid(scl_clear(scl), 1)[:, 2].any()


def test_every_cloud_class_is_dilated_and_the_others_are_not() -> None:
    for cls in range(12):
        scl = np.full((7, 7), 4, np.uint8)
        scl[2:5, 2:5] = cls
        clear = MaskRule("scl", opening=0, dilation=1).cleaned_clear(scl)
        lost = int((~clear).sum())
        if cls in (3, 8, 9, 10):
            assert lost == 25, cls  # 3x3 grown to 5x5
        elif cls in DEFAULT_SCL_EXCLUDE:
            assert lost == 9, cls  # masked, not grown (no data, defective, snow)
        else:
            assert lost == 0, cls


def test_opening_removes_speckle_before_dilation() -> None:
    """A lone cloud pixel (speckle, e.g. a bright roof) stays masked itself but is not grown;
    a 3x3 cloud survives an opening of 1 and is dilated."""
    scl = np.full((15, 15), 4, np.uint8)
    scl[2, 2] = 9  # speckle
    scl[8:11, 8:11] = 8  # a real cloud
    clear = MaskRule("scl", opening=1, dilation=2).cleaned_clear(scl)
    expected = np.ones((15, 15), bool)
    expected[2, 2] = False
    expected[6:13, 6:13] = False
    np.testing.assert_array_equal(clear, expected)
    # Without opening the speckle grows to 5x5.
    no_open = MaskRule("scl", opening=0, dilation=2).cleaned_clear(scl)
    assert int((~no_open[0:5, 0:5]).sum()) == 25


def test_landsat_cloud_bits_are_dilated_fill_and_snow_are_not() -> None:
    qa = np.full((3, 9, 9), CLEAR, np.uint16)
    qa[0, 4, 4] = CLOUD
    qa[1, 4, 4] = CLOUD_SHADOW | DILATED_CLOUD
    qa[2, 4, 4] = FILL
    qa[2, 0, 0] = SNOW
    clear = MaskRule("qa_pixel", opening=0, dilation=2).cleaned_clear(qa)
    assert int((~clear[0]).sum()) == 25 and int((~clear[1]).sum()) == 25
    assert int((~clear[2]).sum()) == 2  # fill and snow, not grown
    assert clear[2, 4, 3] and clear[2, 0, 1]


def test_cleanup_is_per_time_slice() -> None:
    scl = np.full((3, 7, 7), 4, np.uint8)
    scl[1, 3, 3] = 9
    clear = MaskRule("scl", opening=0, dilation=1).cleaned_clear(scl)
    assert clear[0].all() and clear[2].all() and int((~clear[1]).sum()) == 9


def test_cleanup_on_dask_tiles_equals_whole_array() -> None:
    """The engine runs the clean-up per tile with ``halo`` pixels of overlap: tiling must not
    change the answer (clouds crossing tile edges, speckle at tile corners)."""
    import dask.array as da

    rng = np.random.default_rng(3)
    scl = rng.choice(np.array([4, 4, 4, 4, 5, 7, 9, 8, 3, 0], np.uint8), (2, 61, 67))
    scl[:, 20:34, 25:40] = 9  # a big cloud across tiles
    rule = MaskRule("scl", opening=1, dilation=3)
    whole = rule.cleaned_clear(scl)
    tiled = da.map_overlap(
        rule.cleaned_clear,
        da.from_array(scl, chunks=(2, 16, 16)),
        depth={0: 0, 1: rule.halo, 2: rule.halo},
        boundary="none",
        dtype=bool,
    ).compute()
    np.testing.assert_array_equal(tiled, whole)


def test_opening_brute_force() -> None:
    """Opening = erosion then dilation by a (2p+1)² square, against the set definition: a pixel
    stays when some (2p+1)² window centred in the array and inside the mask (beyond the array:
    inside) covers it."""
    from rgb_assets.core.raster.masking import open_mask

    rng = np.random.default_rng(5)
    mask = rng.random((14, 15)) > 0.35
    mask[3:9, 4:11] = True  # a blob that survives, with ragged edges around it
    mask[:4, -4:] = True  # and one at the corner (beyond the array counts as inside)
    for p in (1, 2):
        padded = np.pad(mask, p, constant_values=True)
        h, w = mask.shape
        expected = np.zeros_like(mask)
        for y in range(h):
            for x in range(w):
                # The window centred at array (y, x) is padded[y : y + 2p + 1, x : x + 2p + 1].
                if padded[y : y + 2 * p + 1, x : x + 2 * p + 1].all():
                    expected[max(0, y - p) : y + p + 1, max(0, x - p) : x + p + 1] = True
        assert expected.any() and (expected != mask).any()
        np.testing.assert_array_equal(open_mask(mask, p), expected)


def test_mask_rule_describes_itself() -> None:
    d = MaskRule("scl", opening=2, dilation=5).describe()
    assert d["opening"] == 2 and d["dilation"] == 5 and d["scl_cloud"] == [3, 8, 9, 10]
    with pytest.raises(InputError, match="mask.scl_cloud"):
        MaskRule("scl", scl_cloud=(12,))
    with pytest.raises(InputError, match="mask.opening"):
        MaskRule("scl", opening=-1)
