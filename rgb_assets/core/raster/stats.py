"""Statistics of a composite: per-band STAC ``raster:statistics`` and the clear fraction, and the
range of surface reflectance that is physically plausible (the engine applies
``DN * scale + offset`` per time slice inside its median, see ``raster.compositing``).

Computed tile by tile (from the blocks the Zarr writer has in hand, or from the written store),
so memory stays at one tile whatever the AOI: counts, minimum and maximum are exact; mean and
standard deviation are accumulated in float64 and merged across tiles (Chan et al.), so they can
differ from numpy's float32 pairwise sums in the 7th significant digit; the 1st/99th percentiles
are exact (numpy's default linear interpolation) by a two-pass radix selection over the float32
bit patterns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from rgb_assets.core.raster.compositing import COUNT_BAND
from rgb_assets.core.raster.residue import ResidueTest, residue_figures

# Surface reflectance outside this range is physically implausible (a missing or doubled
# offset shows up here first); bright snow and specular glint can pass 1.0 slightly.
PLAUSIBLE_REFLECTANCE = (-0.05, 1.6)
PERCENTILES = (1.0, 99.0)
#: Tile side read at once (a multiple of the Zarr chunk): 4 x 16 MB of float32.
TILE = 2048

#: Boolean "inside the AOI" for the rows/columns of one tile.
InsideFn = Callable[[slice, slice], np.ndarray]


def _sort_keys(v: np.ndarray) -> np.ndarray:
    """float32 → uint32 keys in the same order as the floats (no NaN given)."""
    u = v.astype(np.float32, copy=False).view(np.uint32)
    return np.where(u >> 31, ~u, u | np.uint32(0x80000000))


def _lerp(a: float, b: float, t: float) -> float:
    """numpy.percentile's linear interpolation between neighbouring order statistics."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


@dataclass
class _Moments:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = np.inf
    hi: float = -np.inf
    hist: np.ndarray = field(default_factory=lambda: np.zeros(1 << 16, np.int64))

    def add(self, v: np.ndarray) -> None:
        if not v.size:
            return
        v64 = v.astype(np.float64)
        n, mean = v.size, float(v64.mean())
        m2 = float(((v64 - mean) ** 2).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total
        self.lo = min(self.lo, float(v.min()))
        self.hi = max(self.hi, float(v.max()))
        self.hist += np.bincount(_sort_keys(v) >> 16, minlength=1 << 16)


def _tiles(shape: tuple[int, int], size: int) -> Iterator[tuple[slice, slice]]:
    for y in range(0, shape[0], size):
        for x in range(0, shape[1], size):
            yield slice(y, min(y + size, shape[0])), slice(x, min(x + size, shape[1]))


class ZarrStats:
    """Statistics of a composite accumulated tile by tile, finished from its Zarr store.

    ``add`` takes the tiles as they are computed (any order, any tiling: ``write_zarr`` feeds
    it the blocks it has in hand, so the composite is not read back for them); ``finish`` reads
    the store once more, only for the few histogram bins that hold the 1st and 99th
    percentiles' order statistics, and returns the figures of ``band_stats_zarr``.
    """

    def __init__(
        self, bands: tuple[str, ...], inside: InsideFn | None, residue: ResidueTest | None
    ) -> None:
        self.bands = bands
        self.inside = inside
        self.residue = residue if {"blue", "red"} <= set(bands) else None
        self.moments = {b: _Moments() for b in bands}
        self.n_inside = self.n_clear = self.obs_sum = self.flagged = 0

    def _masks(self, ys: slice, xs: slice, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ins = self.inside(ys, xs) if self.inside else np.ones(count.shape, bool)
        return ins, (count > 0) & ins

    def add(self, ys: slice, xs: slice, blocks: Mapping[str, np.ndarray]) -> None:
        """One tile: the clear count (``COUNT_BAND``) and every band, same shape."""
        count = blocks[COUNT_BAND]
        ins, clear = self._masks(ys, xs, count)
        self.n_inside += int(ins.sum())
        self.n_clear += int(clear.sum())
        self.obs_sum += int(count[ins].sum(dtype=np.int64))
        values = {b: blocks[b][clear] for b in self.bands}
        for b in self.bands:
            self.moments[b].add(values[b])
        if self.residue is not None:
            self.flagged += int(self.residue.flags(values["blue"], values["red"]).sum())

    def finish(self, path: Path, tile: int = TILE) -> dict[str, Any]:
        """The figures, after every tile was added; ``path`` is the written Zarr store."""
        n_inside, n_clear, moments = self.n_inside, self.n_clear, self.moments
        out: dict[str, Any] = {
            "pixels_in_aoi": n_inside,
            "clear_pixels": n_clear,
            "clear_fraction": round(n_clear / n_inside, 6) if n_inside else 0.0,
            "mean_clear_observations": round(self.obs_sum / n_inside, 4) if n_inside else 0.0,
            "bands": {},
        }
        if self.residue is not None:
            out["residue"] = residue_figures(self.flagged, n_clear, self.residue)
        # Second pass, only for the bins that hold the percentiles' order statistics.
        wanted: dict[str, dict[int, int]] = {}
        for b, m in moments.items():
            if not m.n:
                continue
            cum = np.cumsum(m.hist)
            ranks = set()
            for q in PERCENTILES:
                r = q / 100 * (m.n - 1)
                ranks |= {int(np.floor(r)), int(np.ceil(r))}
            wanted[b] = {rank: int(np.searchsorted(cum, rank, side="right")) for rank in ranks}
        found: dict[str, dict[int, list[np.ndarray]]] = {
            b: {bin_: [] for bin_ in set(w.values())} for b, w in wanted.items()
        }
        if wanted:
            group = zarr.open_group(str(path), mode="r")
            count_arr = group[COUNT_BAND]
            for ys, xs in _tiles(tuple(count_arr.shape), tile):
                _, clear = self._masks(ys, xs, count_arr[ys, xs])
                for b, bins in found.items():
                    v = group[b][ys, xs][clear]
                    top = _sort_keys(v) >> 16
                    for bin_, parts in bins.items():
                        parts.append(v[top == bin_])
        for b in self.bands:
            m = moments[b]
            if not m.n:
                out["bands"][b] = {"valid_percent": 0.0}
                continue
            cum = np.cumsum(m.hist)
            sorted_bins = {k: np.sort(np.concatenate(v)) for k, v in found[b].items()}
            stat = {
                rank: float(sorted_bins[bin_][rank - (int(cum[bin_ - 1]) if bin_ else 0)])
                for rank, bin_ in wanted[b].items()
            }
            pcts = []
            for q in PERCENTILES:
                r = q / 100 * (m.n - 1)
                lo = int(np.floor(r))
                pcts.append(_lerp(stat[lo], stat[int(np.ceil(r))], r - lo))
            out["bands"][b] = {
                "minimum": round(m.lo, 6),
                "maximum": round(m.hi, 6),
                "mean": round(m.mean, 6),
                "stddev": round(float(np.sqrt(m.m2 / m.n)), 6),
                "valid_percent": round(100.0 * m.n / max(1, n_inside), 4),
                "p1": round(pcts[0], 6),
                "p99": round(pcts[1], 6),
            }
        return out


def band_stats_zarr(
    path: Path,
    bands: tuple[str, ...],
    inside: InsideFn | None,
    tile: int = TILE,
    residue: ResidueTest | None = None,
) -> dict[str, Any]:
    """Per-band statistics (STAC raster ``statistics`` names) and the clear-pixel fraction of
    the composite in the Zarr store at ``path``, read one tile at a time.

    ``inside`` gives the AOI mask of a tile (None: every pixel is inside). With ``residue``
    (and blue and red among ``bands``), the cloud residue figures (``raster.residue``) are
    counted in the same pass, under the key ``residue``.
    """
    group = zarr.open_group(str(path), mode="r")
    stats = ZarrStats(bands, inside, residue)
    for ys, xs in _tiles(tuple(group[COUNT_BAND].shape), tile):
        stats.add(ys, xs, {n: group[n][ys, xs] for n in (COUNT_BAND, *bands)})
    return stats.finish(path, tile)


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
