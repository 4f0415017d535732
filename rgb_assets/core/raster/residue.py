"""Cloud and haze residue of a composite: how many clear pixels still look like haze or cloud.

The test, per composite pixel with a value: **bright** (blue reflectance above ``min_blue``,
0.08: dense vegetation, water and most soils are darker in blue) **and hazy** (haze-optimized
transform ``blue - 0.5 * red`` above ``min_hot``, 0.04: haze and cloud edges raise blue more than
red, bright bare surfaces raise red too). On the demo's real Sentinel-2 sample the clear
forest's HOT stays below 0.041-0.046 (its 99th percentile, June and September 2019) while the
cloud-edge residue the SCL labels clear has a median HOT of 0.05-0.06 and blue of 0.09-0.12.
Figures: README, "Cloud-free by default".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rgb_assets.core.raster.robust import HOT_RED_WEIGHT


@dataclass(frozen=True)
class ResidueTest:
    min_blue: float = 0.08
    min_hot: float = 0.04

    def flags(self, blue: np.ndarray, red: np.ndarray) -> np.ndarray:
        """True where a pixel is bright and hazy (NaN pixels are never flagged)."""
        with np.errstate(invalid="ignore"):
            hot = blue - np.float32(HOT_RED_WEIGHT) * red
            return (blue > self.min_blue) & (hot > self.min_hot)

    def describe(self) -> str:
        return f"blue > {self.min_blue:g} and blue - 0.5 red > {self.min_hot:g}"


def residue_stats(
    blue: np.ndarray, red: np.ndarray, valid: np.ndarray, test: ResidueTest | None = None
) -> dict[str, Any]:
    """Residue fraction among ``valid`` composite pixels (those with a value in the AOI)."""
    test = test or ResidueTest()
    return residue_figures(int((test.flags(blue, red) & valid).sum()), int(valid.sum()), test)


def residue_figures(flagged: int, valid: int, test: ResidueTest | None = None) -> dict[str, Any]:
    """The residue figures from counts (``raster.stats`` counts them tile by tile)."""
    test = test or ResidueTest()
    return {
        "residue_fraction": round(flagged / valid, 6) if valid else 0.0,
        "residue_pixels": flagged,
        "valid_pixels": valid,
        "test": test.describe(),
    }
