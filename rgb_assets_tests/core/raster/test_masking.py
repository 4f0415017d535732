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
