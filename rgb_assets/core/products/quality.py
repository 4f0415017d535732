"""Quality gates of a composite, evaluated before it is published.

Plain records the Dagster layer turns into asset check results: a composite whose blocking
checks fail is never published (the previous product stays). A month with no clear
observation is not a failure but is flagged (``warn``), so it never looks like a success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rgb_assets.core.products.composite import CompositeResult
from rgb_assets.core.raster.residue import ResidueTest
from rgb_assets.core.raster.stats import PLAUSIBLE_REFLECTANCE

Severity = Literal["error", "warn"]


@dataclass(frozen=True)
class CheckSpec:
    """A quality check: its name, whether a failure blocks publishing, and what it tests."""

    name: str
    blocking: bool
    description: str


@dataclass(frozen=True)
class ResidueCheck:
    """The residue check's settings: the per-pixel test (``raster.residue``), the highest
    residue fraction that passes, and whether a failure blocks publishing (severity error)
    or only warns."""

    test: ResidueTest = field(default_factory=ResidueTest)
    max_fraction: float = 0.01
    blocking: bool = False


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
    # Blocking only when configured: its failures are warnings unless ``ResidueCheck.blocking``.
    CheckSpec(
        "cloud_residue",
        True,
        "Fraction of the composite's clear pixels that are still bright and hazy "
        f"({ResidueTest().describe()} by default): cloud edges and haze the mask missed; "
        "warns above the maximum, blocks only when configured to",
    ),
)


def evaluate(
    result: CompositeResult, min_clear_fraction: float, residue: ResidueCheck | None = None
) -> list[CheckOutcome]:
    """Every check of ``CHECKS`` on ``result``; a no-data month gives a warning, not a pass."""
    residue = residue or ResidueCheck()
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
                "month": result.month.key,
                "clear_fraction": frac,
                "minimum": min_clear_fraction,
                "clear_pixels": result.stats.get("clear_pixels", 0),
                "pixels_in_aoi": result.stats.get("pixels_in_aoi", 0),
                "mean_clear_observations": result.stats.get("mean_clear_observations", 0.0),
                "observations": result.stats.get("observations", 0),
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
        _residue(result, residue),
    ]


def _residue(result: CompositeResult, check: ResidueCheck) -> CheckOutcome:
    """The residue fraction against its maximum (figures from ``stats["residue"]``)."""
    figures = result.stats.get("residue")
    month = result.month.key
    if figures is None:
        return CheckOutcome(
            "cloud_residue",
            passed=True,
            severity="warn",
            description=f"{month}: not measured (the test needs the blue and red bands)",
            metadata={"month": month},
        )
    frac = float(figures["residue_fraction"])
    return CheckOutcome(
        "cloud_residue",
        passed=frac <= check.max_fraction,
        severity="error" if check.blocking else "warn",
        description=f"{month}: residue {frac:.2%} of clear pixels vs maximum "
        f"{check.max_fraction:.2%} ({figures['test']})",
        metadata={
            "month": month,
            "residue_fraction": frac,
            "residue_pixels": int(figures["residue_pixels"]),
            "clear_pixels": int(figures["valid_pixels"]),
            "maximum": check.max_fraction,
            "blocking": check.blocking,
            "test": figures["test"],
            "recipe": result.stats.get("recipe", {}),
        },
    )


def blocking_failures(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    """Failed checks that stop publishing (errors of blocking checks)."""
    blocking = {c.name for c in CHECKS if c.blocking}
    return [o for o in outcomes if not o.passed and o.severity == "error" and o.name in blocking]
