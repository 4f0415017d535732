"""Quality gates of a composite, evaluated before it is published.

Plain records the Dagster layer turns into asset check results: a composite whose blocking
checks fail is never published (the previous product stays). A month with no clear
observation is not a failure but is flagged (``warn``), so it never looks like a success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rgb_assets.core.products.composite import CompositeResult
from rgb_assets.core.raster.stats import PLAUSIBLE_REFLECTANCE

Severity = Literal["error", "warn"]


@dataclass(frozen=True)
class CheckSpec:
    """A quality check: its name, whether a failure blocks publishing, and what it tests."""

    name: str
    blocking: bool
    description: str


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one check on one composite."""

    name: str
    passed: bool
    severity: Severity
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


CHECKS = (
    CheckSpec(
        "clear_coverage",
        True,
        "Fraction of AOI pixels with at least one clear observation",
    ),
    CheckSpec(
        "reflectance_range",
        True,
        f"1st-99th percentile reflectance within {PLAUSIBLE_REFLECTANCE} "
        "(catches a missing or doubled offset)",
    ),
    CheckSpec(
        "output_grid",
        True,
        "The written grid equals the requested one (CRS, shape, transform)",
    ),
)


def evaluate(result: CompositeResult, min_clear_fraction: float) -> list[CheckOutcome]:
    """Every check of ``CHECKS`` on ``result``; a no-data month gives a warning, not a pass."""
    if result.no_data:
        return [
            CheckOutcome(
                c.name,
                passed=False,
                severity="warn",
                description="no data: no clear observation in the month, nothing published",
                metadata={"outcome": "no data"},
            )
            for c in CHECKS
        ]
    frac = result.stats["clear_fraction"]
    lo, hi = PLAUSIBLE_REFLECTANCE
    ranges = {b: (s.get("p1"), s.get("p99")) for b, s in result.stats["bands"].items()}
    bad = {b: r for b, r in ranges.items() if r[0] is not None and (r[0] < lo or r[1] > hi)}
    grid_keys = ("epsg", "shape", "transform")
    same_grid = all(result.grid.get(k) == result.requested_grid.get(k) for k in grid_keys)
    return [
        CheckOutcome(
            "clear_coverage",
            passed=frac >= min_clear_fraction,
            severity="error",
            description=f"clear fraction {frac:.3f} vs minimum {min_clear_fraction:.3f}",
            metadata={
                "clear_fraction": frac,
                "minimum": min_clear_fraction,
                "scene_count": len(result.raw_item_ids),
            },
        ),
        CheckOutcome(
            "reflectance_range",
            passed=not bad,
            severity="error",
            description="all bands plausible"
            if not bad
            else f"implausible reflectance (p1, p99) in {bad}: missing or doubled offset?",
            metadata={"p1_p99": ranges, "plausible": list(PLAUSIBLE_REFLECTANCE)},
        ),
        CheckOutcome(
            "output_grid",
            passed=same_grid,
            severity="error",
            description="grid as requested" if same_grid else "written grid differs from request",
            metadata={
                "requested": result.requested_grid,
                "written": {k: result.grid.get(k) for k in grid_keys},
            },
        ),
    ]


def blocking_failures(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    """Failed checks that stop publishing (errors of blocking checks)."""
    blocking = {c.name for c in CHECKS if c.blocking}
    return [o for o in outcomes if not o.passed and o.severity == "error" and o.name in blocking]
