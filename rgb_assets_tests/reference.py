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


def weiszfeld_geomedian(points: np.ndarray, iters: int = 5000, eps: float = 1e-12) -> np.ndarray:
    """Geometric median of (n, B) points in float64 by plain Weiszfeld iterations (with the
    Vardi-Zhang step when an iterate lands on a point), independent of geomad."""
    if len(points) == 1:
        return points[0]
    y = points.mean(axis=0)
    for _ in range(iters):
        d = np.linalg.norm(points - y, axis=1)
        at = d < 1e-15
        w = 1.0 / np.where(at, 1.0, d)
        w[at] = 0.0
        if not w.any():  # every point coincides with the iterate
            return y
        t = (points * w[:, None]).sum(axis=0) / w.sum()
        if at.any():
            r = np.linalg.norm(((points - y) * w[:, None]).sum(axis=0))
            gamma = min(1.0, at.sum() / r) if r > 0 else 1.0
            t = (1 - gamma) * t + gamma * y
        if np.linalg.norm(t - y) < eps:
            return t
        y = t
    return y
