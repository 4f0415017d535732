"""Digital numbers to surface reflectance: nodata first, then ``DN * scale + offset``."""

from __future__ import annotations

import numpy as np

# Surface reflectance outside this range is physically implausible (a missing or doubled
# offset shows up here first); bright snow and specular glint can pass 1.0 slightly.
PLAUSIBLE_REFLECTANCE = (-0.05, 1.6)


def to_reflectance(dn: np.ndarray, scale: float, offset: float, nodata: float | None) -> np.ndarray:
    """float32 reflectance with NaN where ``dn`` is nodata."""
    out = dn.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if nodata is not None:
        out[dn == nodata] = np.nan
    return out
