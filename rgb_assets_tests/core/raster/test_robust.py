"""The haze test on hand-built observations with known answers (``raster.robust``), and the
engine's median after it (``compositing._haze_block`` + ``_median_block``)."""

from __future__ import annotations

import numpy as np
import pytest

from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.raster.compositing import _haze_block, _median_block
from rgb_assets.core.raster.robust import HazeRule, haze_index, reject_hazy


def _pixel(blue: list[float], red: list[float], valid: list[bool] | None = None):
    """One pixel's observations as (T, 1, 1) uint16 DN at scale 1e-4 (reflectance * 1e4)."""
    b = np.array(np.round(np.array(blue) * 1e4), "uint16").reshape(-1, 1, 1)
    r = np.array(np.round(np.array(red) * 1e4), "uint16").reshape(-1, 1, 1)
    v = np.array(valid if valid is not None else [True] * len(blue)).reshape(-1, 1, 1)
    return v, b, r


def _kept(rule: HazeRule, blue, red, valid=None) -> list[bool]:
    v, b, r = _pixel(blue, red, valid)
    t = len(blue)
    out = _haze_block(
        v,
        b,
        r,
        scales=np.full((2, t), 1e-4, "float32"),
        offsets=np.zeros((2, t), "float32"),
        rule=rule,
    )
    return out[:, 0, 0].tolist()


def test_hot_index_is_blue_minus_half_red():
    blue = np.array([0.10, 0.04], "float32")
    red = np.array([0.06, 0.04], "float32")
    np.testing.assert_allclose(haze_index(blue, red), [0.07, 0.02], atol=1e-7)
    np.testing.assert_allclose(haze_index(blue, red, "blue"), blue)


def test_hazy_outlier_rejected_against_the_median():
    # HOT: 0.015, 0.020, 0.070 (haze), 0.018 → median 0.019; limit 0.034: the haze goes.
    blue = [0.030, 0.035, 0.100, 0.033]
    red = [0.030, 0.030, 0.060, 0.030]
    assert _kept(HazeRule(), blue, red) == [True, True, False, True]


def test_bright_but_not_hazy_is_kept():
    # A brighter but neutral observation (red rises with blue, e.g. a dry clearing): HOT
    # 0.015, 0.016, 0.017 → nothing rejected, although blue doubles.
    blue = [0.030, 0.032, 0.065]
    red = [0.030, 0.032, 0.096]
    assert _kept(HazeRule(), blue, red) == [True, True, True]


def test_margin_decides():
    blue = [0.030, 0.030, 0.055]  # HOT 0.015, 0.015, 0.040 → 0.025 above the median
    red = [0.030, 0.030, 0.030]
    assert _kept(HazeRule(margin=0.02), blue, red) == [True, True, False]
    assert _kept(HazeRule(margin=0.03), blue, red) == [True, True, True]


def test_two_observations_never_averaged_least_hazy_kept():
    blue = [0.120, 0.035]  # hazy first, clear second
    red = [0.080, 0.030]
    assert _kept(HazeRule(), blue, red) == [False, True]
    assert _kept(HazeRule(few="nodata"), blue, red) == [False, False]
    assert _kept(HazeRule(few="keep"), blue, red) == [True, True]
    # min_obs 2: two observations count as "enough"; their median is the mean of HOT 0.08 and
    # 0.02, 0.05, and the hazy one exceeds it by 0.03 > 0.015.
    assert _kept(HazeRule(min_obs=2), blue, red) == [False, True]


def test_one_observation_kept_or_dropped_by_policy():
    assert _kept(HazeRule(), [0.12], [0.08]) == [True]
    assert _kept(HazeRule(few="nodata"), [0.12], [0.08]) == [False]


def test_invalid_observations_play_no_part():
    # The masked t=1 would be the least hazy; it must neither be kept nor count.
    blue, red = [0.120, 0.020, 0.035], [0.080, 0.030, 0.030]
    assert _kept(HazeRule(), blue, red, [True, False, True]) == [False, False, True]


def test_least_hazy_reference():
    # HOT 0.015, 0.045, 0.050, 0.025: the two hazy ones exceed the least hazy by > 0.015 and
    # go, even though they are the majority (a median reference keeps them).
    blue = [0.030, 0.060, 0.065, 0.040]
    red = [0.030, 0.030, 0.030, 0.030]
    assert _kept(HazeRule(reference="least_hazy"), blue, red) == [True, False, False, True]
    assert _kept(HazeRule(), blue, red) == [True, True, True, True]


def test_ties_keep_the_earliest():
    assert _kept(HazeRule(), [0.05, 0.05], [0.04, 0.04]) == [True, False]


def test_off_is_the_identity():
    v = np.random.default_rng(0).random((4, 3, 3)) > 0.3
    assert reject_hazy(v, np.zeros((4, 3, 3), "float32"), np.zeros((3, 3)), HazeRule("none")) is v


def test_median_after_the_haze_test_known_answer():
    """Three pixels: haze among four (rejected, median of three), two obs hazy + clear (the
    clear one, not the mean), no observation (NaN)."""
    blue = np.array(
        [[[300, 1200, 300]], [[350, 350, 300]], [[1000, 0, 300]], [[330, 0, 300]]], "uint16"
    )
    red = np.array(
        [[[300, 800, 300]], [[300, 300, 300]], [[600, 0, 300]], [[300, 0, 300]]], "uint16"
    )
    valid = np.ones((4, 1, 3), bool)
    valid[2:, 0, 1] = False
    valid[:, 0, 2] = False
    scales, offsets = np.full((2, 4), 1e-4, "float32"), np.zeros((2, 4), "float32")
    kept = _haze_block(valid, blue, red, scales=scales, offsets=offsets, rule=HazeRule())
    med = _median_block(kept, blue, scales=scales[0], offsets=offsets[0])
    np.testing.assert_allclose(med[0, :2], [0.033, 0.035], rtol=1e-6)
    assert np.isnan(med[0, 2])
    assert kept.sum(axis=0).tolist() == [[3, 1, 0]]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"index": "ndvi"}, "haze.index"),
        ({"few": "mean"}, "haze.few"),
        ({"reference": "mode"}, "haze.reference"),
        ({"margin": -0.1}, "haze.margin"),
        ({"min_obs": 1}, "haze.min_obs"),
    ],
)
def test_haze_rule_rejects_bad_input(kwargs, field):
    with pytest.raises(InputError) as err:
        HazeRule(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize(
    "rule", [HazeRule(), HazeRule(reference="least_hazy"), HazeRule(few="nodata")]
)
def test_haze_block_strips_equal_the_whole_tile(monkeypatch, rule):
    """Row strips (uneven: 7 rows of 37 columns over 50 rows) give the tile's own answer."""
    from rgb_assets.core.raster import compositing

    rng = np.random.default_rng(7)
    t, y, x = 9, 50, 37
    valid = rng.random((t, y, x)) > 0.3
    blue = rng.integers(100, 3000, (t, y, x)).astype("uint16")
    red = rng.integers(100, 3000, (t, y, x)).astype("uint16")
    kw = dict(scales=np.full((2, t), 1e-4, "float32"), offsets=np.zeros((2, t), "float32"))
    monkeypatch.setattr(compositing, "HAZE_STRIP_PIXELS", y * x)
    whole = _haze_block(valid, blue, red, rule=rule, **kw)
    monkeypatch.setattr(compositing, "HAZE_STRIP_PIXELS", 7 * x)
    strips = _haze_block(valid, blue, red, rule=rule, **kw)
    assert (whole != valid).any()  # the rule rejected something: the comparison means something
    np.testing.assert_array_equal(strips, whole)
