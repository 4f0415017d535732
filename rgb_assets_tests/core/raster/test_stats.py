"""band_stats: per-band statistics over clear pixels inside the AOI, known answers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from rgb_assets.core.raster.stats import band_stats


def _dataset(red: list[list[float]], count: list[list[int]]) -> xr.Dataset:
    return xr.Dataset(
        {
            "red": (("y", "x"), np.array(red, dtype=np.float32)),
            "clear_count": (("y", "x"), np.array(count, dtype=np.uint16)),
        }
    )


def test_known_answers_on_a_small_dataset():
    """3 x 3 grid, 8 pixels inside the AOI, 5 of them clear: red 0.1, 0.2, 0.3, 0.4, 0.5.
    The clear pixel outside the AOI (0.9) and the NaN pixels without observations are ignored."""
    ds = _dataset(
        [[0.1, 0.2, 0.3], [0.4, 0.5, np.nan], [np.nan, np.nan, 0.9]],
        [[2, 1, 3], [4, 5, 0], [0, 0, 7]],
    )
    inside = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]], dtype=bool)
    stats = band_stats(ds, ("red",), inside)
    assert stats["pixels_in_aoi"] == 8
    assert stats["clear_pixels"] == 5
    assert stats["clear_fraction"] == 0.625
    assert stats["mean_clear_observations"] == 1.875  # (2+1+3+4+5+0+0+0) / 8
    red = stats["bands"]["red"]
    assert red["minimum"] == 0.1 and red["maximum"] == 0.5
    assert red["mean"] == pytest.approx(0.3, abs=1e-6)
    assert red["stddev"] == pytest.approx(np.sqrt(0.02), abs=1e-6)  # population std
    assert red["valid_percent"] == 62.5
    assert red["p1"] == pytest.approx(0.104, abs=1e-6)  # linear interpolation
    assert red["p99"] == pytest.approx(0.496, abs=1e-6)


def test_no_clear_pixel_and_empty_aoi():
    ds = _dataset([[np.nan, np.nan]], [[0, 0]])
    stats = band_stats(ds, ("red",), np.ones((1, 2), bool))
    assert stats["clear_pixels"] == 0 and stats["clear_fraction"] == 0.0
    assert stats["bands"] == {"red": {"valid_percent": 0.0}}
    empty = band_stats(ds, ("red",), np.zeros((1, 2), bool))
    assert empty["pixels_in_aoi"] == 0
    assert empty["clear_fraction"] == 0.0 and empty["mean_clear_observations"] == 0.0
