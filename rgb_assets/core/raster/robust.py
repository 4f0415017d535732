"""Rejecting what cloud masks miss: hazy or bright observations that SCL / QA_PIXEL call clear.

Per pixel, each clear observation gets a haze index, by default Zhang et al.'s haze-optimized
transform in Fmask's form, ``HOT = blue - 0.5 * red`` (reflectance): haze and thin cloud raise
blue much more than red, bright surfaces raise both. Then:

* with at least ``min_obs`` clear observations, those whose index exceeds the pixel's median
  index by more than ``margin`` are dropped (the median of the others is robust to a minority
  of hazy ones);
* with fewer (one or two clear observations, where a median is a mean or the value itself),
  ``few`` decides: ``least_hazy`` keeps only the observation with the lowest index (a hazy and a
  clear value are never averaged), ``nodata`` leaves the pixel empty, ``keep`` keeps them all.

Pure numpy on (T, y, x) blocks; the engine (``raster.compositing``) wires it per tile between the
observation mask and the per-band reductions. Defaults and the figures behind them: README,
"Cloud-free by default".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from rgb_assets.core.domain.errors import InputError

HazeIndex = Literal["hot", "blue", "none"]
FewPolicy = Literal["least_hazy", "nodata", "keep"]
Reference = Literal["median", "least_hazy"]
HAZE_INDICES: tuple[str, ...] = ("hot", "blue", "none")
FEW_POLICIES: tuple[str, ...] = ("least_hazy", "nodata", "keep")
REFERENCES: tuple[str, ...] = ("median", "least_hazy")
# HOT's red weight (Fmask, Zhu & Woodcock 2012: blue - 0.5 red - 0.08 > 0 flags haze/cloud).
HOT_RED_WEIGHT = 0.5


@dataclass(frozen=True)
class HazeRule:
    """Which clear observations are still rejected as haze (picklable for Dask workers).

    ``index="none"`` turns the rule off: the composite uses every clear observation (the
    plain SCL / QA_PIXEL composite, exact against ``numpy.nanmedian`` for the median).
    """

    index: HazeIndex = "hot"
    reference: Reference = "median"
    margin: float = 0.015
    min_obs: int = 3
    few: FewPolicy = "least_hazy"

    def __post_init__(self) -> None:
        if self.index not in HAZE_INDICES:
            raise InputError("haze.index", f"{self.index!r} is not one of {HAZE_INDICES}")
        if self.reference not in REFERENCES:
            raise InputError("haze.reference", f"{self.reference!r} is not one of {REFERENCES}")
        if self.few not in FEW_POLICIES:
            raise InputError("haze.few", f"{self.few!r} is not one of {FEW_POLICIES}")
        if not 0 <= self.margin <= 1:
            raise InputError("haze.margin", f"{self.margin} is not a reflectance in 0..1")
        if not 2 <= self.min_obs <= 255:
            raise InputError("haze.min_obs", f"{self.min_obs} is not in 2..255 observations")

    @property
    def active(self) -> bool:
        return self.index != "none"

    def describe(self) -> dict[str, object]:
        if not self.active:
            return {"index": "none"}
        return {
            "index": self.index,
            "reference": self.reference,
            "margin": self.margin,
            "min_obs": self.min_obs,
            "few": self.few,
        }


def haze_index(blue: np.ndarray, red: np.ndarray, index: HazeIndex = "hot") -> np.ndarray:
    """Per-observation haze index from reflectance (float32)."""
    if index == "blue":
        return blue.astype(np.float32, copy=True)
    return (blue - np.float32(HOT_RED_WEIGHT) * red).astype(np.float32, copy=False)


def reject_hazy(
    valid: np.ndarray, index: np.ndarray, median: np.ndarray, rule: HazeRule
) -> np.ndarray:
    """(T, y, x) observations minus the hazy ones.

    ``index`` is the (T, y, x) haze index (any value where not ``valid``), ``median`` its (y, x)
    per-pixel median over the valid observations (NaN where there are none).
    """
    if not rule.active:
        return valid
    n = valid.sum(axis=0)
    out = valid.copy()
    if rule.reference == "least_hazy":
        masked = np.where(valid, index, np.float32(np.inf))
        limit = masked.min(axis=0) + np.float32(rule.margin)
        out &= ~(index > limit[None])
        return out
    many = n >= rule.min_obs
    with np.errstate(invalid="ignore"):
        limit = median + np.float32(rule.margin)
        out &= ~((index > limit[None]) & many[None])
    few = (n > 0) & ~many
    if rule.few == "nodata":
        out &= ~few[None]
    elif rule.few == "least_hazy":
        masked = np.where(valid, index, np.float32(np.inf))
        best = np.argmin(masked, axis=0)  # first of equal values: the earliest observation
        keep = np.arange(valid.shape[0])[:, None, None] == best[None]
        out &= ~few[None] | keep
    return out
