"""The residue test and the residue check (``raster.residue``, ``products.quality``)."""

from __future__ import annotations

import numpy as np

from rgb_assets.core.domain.months import Month
from rgb_assets.core.products import quality
from rgb_assets.core.products.composite import CompositeResult
from rgb_assets.core.raster.residue import ResidueTest, residue_stats


def test_bright_and_hazy_only():
    blue = np.array([0.03, 0.12, 0.12, 0.09, np.nan], "float32")
    red = np.array([0.03, 0.12, 0.06, 0.03, np.nan], "float32")
    # forest (HOT 0.015): clear; bright and white like a cloud (HOT 0.06): flagged; haze
    # (HOT 0.09): flagged; blue 0.09 with HOT 0.075: flagged; NaN: never.
    assert ResidueTest().flags(blue, red).tolist() == [False, True, True, True, False]
    # A bright soil whose red is higher: blue 0.10, red 0.16 → HOT 0.02: not residue.
    assert not ResidueTest().flags(np.float32(0.10), np.float32(0.16))
    stats = residue_stats(blue, red, ~np.isnan(blue))
    assert stats["residue_fraction"] == 0.75 and stats["valid_pixels"] == 4
    assert stats["test"] == "blue > 0.08 and blue - 0.5 red > 0.04"


def _result(fraction: float | None) -> CompositeResult:
    stats = {
        "clear_fraction": 0.98,
        "clear_pixels": 98,
        "pixels_in_aoi": 100,
        "observations": 4,
        "bands": {"red": {"p1": 0.01, "p99": 0.1}},
        "recipe": {"method": "median"},
    }
    if fraction is not None:
        stats["residue"] = {
            "residue_fraction": fraction,
            "residue_pixels": int(fraction * 98),
            "valid_pixels": 98,
            "test": ResidueTest().describe(),
        }
    grid = {"epsg": 32634, "shape": [10, 10], "transform": [10, 0, 0, 0, -10, 0]}
    return CompositeResult(
        "sentinel-2-l2a", "a", Month(2019, 6), ("red", "green", "blue"), False,
        grid=grid, requested_grid=grid, stats=stats,
    )


def _check(outcomes, name):
    return next(o for o in outcomes if o.name == name)


def test_residue_check_warns_by_default_and_blocks_when_asked():
    over = _result(0.05)
    warn = _check(quality.evaluate(over, 0.05), "cloud_residue")
    assert not warn.passed and warn.severity == "warn"
    assert warn.metadata["month"] == "2019-06" and warn.metadata["residue_fraction"] == 0.05
    assert not quality.blocking_failures(quality.evaluate(over, 0.05))
    strict = quality.ResidueCheck(max_fraction=0.01, blocking=True)
    block = quality.evaluate(over, 0.05, strict)
    assert [o.name for o in quality.blocking_failures(block)] == ["cloud_residue"]
    ok = _check(quality.evaluate(_result(0.005), 0.05, strict), "cloud_residue")
    assert ok.passed and ok.metadata["maximum"] == 0.01


def test_clear_coverage_shows_the_months_figures():
    cov = _check(quality.evaluate(_result(0.0), 0.05), "clear_coverage")
    assert cov.metadata["month"] == "2019-06"
    assert cov.metadata["clear_pixels"] == 98 and cov.metadata["pixels_in_aoi"] == 100


def test_residue_not_measured_without_blue_and_red():
    out = _check(quality.evaluate(_result(None), 0.05), "cloud_residue")
    assert out.passed and "not measured" in out.description
