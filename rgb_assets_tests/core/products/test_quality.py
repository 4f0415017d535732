"""quality.evaluate: the blocking checks of a composite and the residue check, known answers
(the residue check itself: ``core/raster/test_residue.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from rgb_assets.core.domain.months import Month
from rgb_assets.core.products import quality
from rgb_assets.core.products.composite import CompositeResult

GRID = {"epsg": 32634, "shape": [92, 96], "transform": [10.0, 0, 589990.0, 0, -10.0, 5006830.0]}


def _result(
    clear_fraction: float = 0.9,
    p1_p99: tuple[float, float] = (0.01, 0.3),
    grid: dict[str, Any] | None = None,
    no_data: bool = False,
) -> CompositeResult:
    bands = {b: {"p1": p1_p99[0], "p99": p1_p99[1]} for b in ("red", "green", "blue")}
    return CompositeResult(
        "sentinel-2-l2a",
        "forest",
        Month(2019, 7),
        ("red", "green", "blue"),
        no_data=no_data,
        grid=GRID if grid is None else grid,
        requested_grid=GRID,
        stats={
            "clear_fraction": clear_fraction,
            "bands": bands,
            "residue": {
                "residue_fraction": 0.002,
                "residue_pixels": 2,
                "valid_pixels": 1000,
                "test": "blue > 0.08 and blue - 0.5 red > 0.04",
            },
        },
        raw_item_ids=["a", "b", "c"],
    )


def _by_name(outcomes: list[quality.CheckOutcome]) -> dict[str, quality.CheckOutcome]:
    return {o.name: o for o in outcomes}


def test_a_good_composite_passes_every_check():
    outcomes = quality.evaluate(_result(), min_clear_fraction=0.05)
    assert [o.name for o in outcomes] == [c.name for c in quality.CHECKS]
    assert all(o.passed for o in outcomes)
    # The residue check warns unless configured to block; the others are errors.
    assert [o.severity for o in outcomes] == ["error", "error", "error", "warn"]
    assert quality.blocking_failures(outcomes) == []
    coverage = _by_name(outcomes)["clear_coverage"]
    assert {k: coverage.metadata[k] for k in ("clear_fraction", "minimum", "scene_count")} == {
        "clear_fraction": 0.9,
        "minimum": 0.05,
        "scene_count": 3,
    }
    assert coverage.metadata["month"] == "2019-07"


def test_no_data_fails_every_check_as_a_warning_that_does_not_block():
    outcomes = quality.evaluate(_result(clear_fraction=0.0, no_data=True), 0.05)
    assert [o.name for o in outcomes] == [c.name for c in quality.CHECKS]
    assert all(not o.passed and o.severity == "warn" for o in outcomes)
    assert all(o.metadata == {"outcome": "no data"} for o in outcomes)
    assert quality.blocking_failures(outcomes) == []


@pytest.mark.parametrize(
    ("fraction", "minimum", "passed"),
    [(0.5, 0.5, True), (0.499, 0.5, False), (0.967, 1.0, False), (1.0, 1.0, True)],
)
def test_clear_coverage_against_the_minimum(fraction: float, minimum: float, passed: bool):
    outcomes = _by_name(quality.evaluate(_result(clear_fraction=fraction), minimum))
    assert outcomes["clear_coverage"].passed is passed
    assert [o.name for o in quality.blocking_failures(list(outcomes.values()))] == (
        [] if passed else ["clear_coverage"]
    )


@pytest.mark.parametrize(
    ("p1_p99", "passed"),
    [
        ((-0.05, 1.6), True),  # the bounds themselves are plausible
        ((-0.06, 0.3), False),  # a doubled offset pushes dark pixels below zero
        ((0.01, 1.7), False),  # a missing offset or scale pushes bright pixels above
        ((0.0, 1.0), True),
    ],
)
def test_reflectance_range(p1_p99: tuple[float, float], passed: bool):
    outcomes = _by_name(quality.evaluate(_result(p1_p99=p1_p99), 0.05))
    assert outcomes["reflectance_range"].passed is passed
    failed = [o.name for o in quality.blocking_failures(list(outcomes.values()))]
    assert failed == ([] if passed else ["reflectance_range"])


def test_bands_without_statistics_are_not_judged():
    result = _result()
    result.stats["bands"]["red"] = {"valid_percent": 0.0}
    assert _by_name(quality.evaluate(result, 0.05))["reflectance_range"].passed


@pytest.mark.parametrize(
    "change",
    [{"epsg": 3035}, {"shape": [92, 97]}, {"transform": [10.0, 0, 589995.0, 0, -10.0, 5006830.0]}],
)
def test_a_grid_other_than_requested_fails(change: dict[str, Any]):
    outcomes = _by_name(quality.evaluate(_result(grid=GRID | change), 0.05))
    assert not outcomes["output_grid"].passed
    assert outcomes["output_grid"].metadata["requested"] == GRID
    assert [o.name for o in quality.blocking_failures(list(outcomes.values()))] == ["output_grid"]


def test_extra_grid_fields_do_not_matter():
    assert _by_name(quality.evaluate(_result(grid=GRID | {"crs_wkt": "..."}), 0.05))[
        "output_grid"
    ].passed


def test_blocking_failures_lists_every_failed_error():
    outcomes = quality.evaluate(
        _result(clear_fraction=0.01, p1_p99=(0.0, 3.0), grid=GRID | {"epsg": 3035}), 0.05
    )
    assert [o.name for o in quality.blocking_failures(outcomes)] == [
        "clear_coverage",
        "reflectance_range",
        "output_grid",
    ]
