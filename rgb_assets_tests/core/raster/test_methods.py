"""Compositing methods on hand-built arrays: percentile against numpy, medoid by hand, the
geometric median against an independent Weiszfeld reference, and the method parser."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.raster.compositing import CompositeOptions, _multiband_task, _percentile_task
from rgb_assets.core.raster.masking import MaskRule
from rgb_assets.core.raster.methods import (
    geomedian_block,
    medoid_block,
    parse_method,
    percentile_block,
)
from rgb_assets.core.raster.robust import HazeRule
from rgb_assets_tests.reference import weiszfeld_geomedian


def test_parse_method():
    assert parse_method("median") == ("median", None)
    assert parse_method("p25") == ("percentile", 25.0)
    assert parse_method("p100") == ("percentile", 100.0)
    assert parse_method("p12.5") == ("percentile", 12.5)
    for bad in ("mean", "p101", "p", "P50", ""):
        with pytest.raises(InputError, match="^method:"):
            parse_method(bad)
    with pytest.raises(InputError, match="^method:"):
        CompositeOptions(MaskRule("scl"), method="max")


def test_haze_test_needs_blue_and_red():
    with pytest.raises(InputError, match="^haze.index:"):
        CompositeOptions(MaskRule("scl"), bands=("nir", "red", "green"))
    CompositeOptions(MaskRule("scl"), bands=("nir", "red", "green"), haze=HazeRule("none"))


@pytest.mark.parametrize("q", [0, 10, 25, 50, 90, 100])
def test_percentile_equals_numpy_nanpercentile(q):
    rng = np.random.default_rng(int(q))
    dn = rng.integers(1, 9000, (7, 12, 12)).astype("uint16")
    valid = rng.random((7, 12, 12)) < 0.6
    valid[:, 0, 0] = False
    scales, offsets = np.full(7, 1e-4, "float32"), np.full(7, -0.1, "float32")
    got = _percentile_task(valid, dn, q=q, scales=scales, offsets=offsets)
    refl = np.where(valid, dn.astype("float32") * np.float32(1e-4) - np.float32(0.1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanpercentile(refl, q, axis=0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7, equal_nan=True)
    assert np.isnan(got[0, 0])


def test_percentile_known_answer():
    stack = np.array([[[0.1]], [[0.4]], [[0.2]], [[np.nan]], [[0.3]]], "float32")
    # 0.1, 0.2, 0.3, 0.4: p25 at rank 0.75 → 0.175; p50 → 0.25
    np.testing.assert_allclose(percentile_block(stack, 25)[0, 0], 0.175, rtol=1e-6)
    np.testing.assert_allclose(percentile_block(stack, 50)[0, 0], 0.25, rtol=1e-6)


def test_medoid_known_answer_and_source_date():
    # One pixel, two bands, four observations: (0,0), (1,0), (1.2,0), (10,10).
    # Summed distances: (0,0) 1 + 1.2 + 14.142 = 16.342; (1,0) 1 + 0.2 + 13.454 = 14.654
    # (least); (1.2,0) 1.2 + 0.2 + 13.323 = 14.723; the outlier far more. The medoid is the
    # second observation, day 18001.
    b0 = np.array([[[0.0]], [[1.0]], [[1.2]], [[10.0]]], "float32")
    b1 = np.array([[[0.0]], [[0.0]], [[0.0]], [[10.0]]], "float32")
    days = np.array([18000, 18001, 18003, 18010], "float32")
    out = medoid_block([b0, b1], days)
    assert out.shape == (3, 1, 1)
    assert out[:, 0, 0].tolist() == [1.0, 0.0, 18001.0]


def test_medoid_with_missing_observations_and_empty_pixels():
    b = np.array([[[0.5, np.nan]], [[np.nan, np.nan]], [[0.7, np.nan]]], "float32")
    out = medoid_block([b, b.copy()], np.array([1, 2, 3], "float32"))
    # Two observations equally central: the earliest wins.
    assert out[:, 0, 0].tolist() == [0.5, 0.5, 1.0]
    assert np.isnan(out[:, 0, 1]).all()


def test_medoid_is_an_observation_of_every_band():
    rng = np.random.default_rng(1)
    dn = [rng.integers(100, 3000, (6, 8, 8)).astype("uint16") for _ in range(3)]
    valid = rng.random((6, 8, 8)) < 0.7
    scales, offsets = np.full((3, 6), 1e-4, "float32"), np.zeros((3, 6), "float32")
    days = np.arange(6, dtype="float32") + 18000
    out = _multiband_task(
        valid, *dn, kind="medoid", scales=scales, offsets=offsets, days=days
    )
    for y in range(8):
        for x in range(8):
            if not valid[:, y, x].any():
                assert np.isnan(out[:, y, x]).all()
                continue
            t = int(out[3, y, x] - 18000)
            assert valid[t, y, x]
            for b in range(3):
                assert out[b, y, x] == np.float32(dn[b][t, y, x]) * np.float32(1e-4)


def test_geomedian_matches_weiszfeld_reference():
    rng = np.random.default_rng(2)
    t, y, x = 9, 6, 5
    stacks = [rng.uniform(0.01, 0.4, (t, y, x)).astype("float32") for _ in range(3)]
    valid = rng.random((t, y, x)) < 0.7
    valid[:, 0, 0] = False
    valid[:, 0, 1] = False
    valid[2, 0, 1] = True  # a single observation: the geomedian is that observation
    for s in stacks:
        s[~valid] = np.nan
    got = geomedian_block(stacks)
    assert got.shape == (3, y, x) and got.dtype == np.float32
    assert np.isnan(got[:, 0, 0]).all()
    np.testing.assert_allclose(got[:, 0, 1], [s[2, 0, 1] for s in stacks], rtol=1e-6)
    for yy in range(y):
        for xx in range(x):
            pts = np.array([[s[k, yy, xx] for s in stacks] for k in range(t) if valid[k, yy, xx]])
            if len(pts) == 0:
                continue
            want = weiszfeld_geomedian(pts.astype("float64"))
            # As good an objective, and within one DN (1e-4 reflectance) of the optimum where
            # it is unique (3+ points not on a line; with 2, any point between them is one).
            if len(pts) >= 3:
                np.testing.assert_allclose(got[:, yy, xx], want, rtol=0, atol=1e-4)
            cost = np.linalg.norm(pts - got[:, yy, xx].astype("float64"), axis=1).sum()
            best = np.linalg.norm(pts - want, axis=1).sum()
            assert cost <= best * (1 + 1e-6) + 1e-9


def test_geomedian_of_collinear_points_is_their_median():
    # Points on a line: the geometric median is the (1-D) median, here (0.3, 0.3).
    v = np.array([0.1, 0.2, 0.3, 0.35, 0.9], "float32").reshape(5, 1, 1)
    got = geomedian_block([v, v.copy()])
    np.testing.assert_allclose(got[:, 0, 0], [0.3, 0.3], atol=2e-5)
