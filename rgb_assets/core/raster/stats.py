"""Statistics of a composite: per-band STAC ``raster:statistics`` and the clear fraction, and the
range of surface reflectance that is physically plausible (the engine applies
``DN * scale + offset`` per time slice inside its median, see ``raster.compositing``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from rgb_assets.core.raster.compositing import COUNT_BAND

# Surface reflectance outside this range is physically implausible (a missing or doubled
# offset shows up here first); bright snow and specular glint can pass 1.0 slightly.
PLAUSIBLE_REFLECTANCE = (-0.05, 1.6)


def band_stats(ds: xr.Dataset, bands: tuple[str, ...], inside: np.ndarray) -> dict[str, Any]:
    """Per-band statistics (STAC raster ``statistics`` names) and the clear-pixel fraction."""
    count = ds[COUNT_BAND].values
    n_inside = int(inside.sum())
    clear = (count > 0) & inside
    out: dict[str, Any] = {
        "pixels_in_aoi": n_inside,
        "clear_pixels": int(clear.sum()),
        "clear_fraction": round(float(clear.sum()) / n_inside, 6) if n_inside else 0.0,
        "mean_clear_observations": round(float(count[inside].mean()), 4) if n_inside else 0.0,
        "bands": {},
    }
    for b in bands:
        v = ds[b].values[clear]
        if v.size == 0:
            out["bands"][b] = {"valid_percent": 0.0}
            continue
        p1, p99 = np.percentile(v, [1, 99])
        out["bands"][b] = {
            "minimum": round(float(v.min()), 6),
            "maximum": round(float(v.max()), 6),
            "mean": round(float(v.mean()), 6),
            "stddev": round(float(v.std()), 6),
            "valid_percent": round(100.0 * v.size / max(1, n_inside), 4),
            "p1": round(float(p1), 6),
            "p99": round(float(p99), 6),
        }
    return out
