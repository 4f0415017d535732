"""Plain numpy reference computations the tests compare the engine and real scenes with."""

from __future__ import annotations

import numpy as np


def to_reflectance(dn: np.ndarray, scale: float, offset: float, nodata: float | None) -> np.ndarray:
    """float32 ``DN * scale + offset`` with NaN where ``dn`` is nodata: the textbook formula,
    independent of the engine's fused median (``core.compositing._median_block``)."""
    out = dn.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if nodata is not None:
        out[dn == nodata] = np.nan
    return out
