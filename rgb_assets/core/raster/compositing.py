"""The compositing engine: lazy load on one grid, mask, scale, per-pixel median, clear count.

Design for speed and bounded memory: items are loaded (``core.loading``: odc-stac parsing,
odc-loader reads, one task per tile) as Dask arrays chunked
``{"time": -1, "y": c, "x": c}``, so each task holds every observation of one spatial tile.
Per tile, one task builds the observations (mask band, AOI, nodata) strip by strip, then one
task per band scales per time slice (one month can mix processing baselines) and takes the
median with a selection network over whole time planes (``_median_block``), equal to
``numpy.nanmedian``, and one task counts observations. Memory is about ``T x c x c`` x 7 bytes
per tile in flight, independent of the AOI size (see ``writers.write_zarr``); figures in
``benchmarks/README.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from odc.geo.xr import rasterize

from rgb_assets.core.domain.collection_specs import RGB, ResolvedItem
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.raster.loading import load_slices
from rgb_assets.core.raster.masking import MaskRule, qa_radsat_clear
from rgb_assets.core.raster.methods import (
    SOURCE_DATE_BAND,
    SOURCE_DATE_UNITS,
    geomedian_block,
    medoid_block,
    parse_method,
    percentile_block,
    reflectance,
)
from rgb_assets.core.raster.robust import HazeRule, haze_index, reject_hazy

COUNT_BAND = "clear_count"
#: Pixels per time plane in one row strip of the haze test (``_haze_block``).
HAZE_STRIP_PIXELS = 256 * 1024
# The plain composite: every clear observation by the mask band, no clean-up, no haze test.
PLAIN_HAZE = HazeRule(index="none")
#: Smallest compute tile side ``tile_side`` goes down to (the archive's and Zarr's block).
MIN_TILE = 512
#: Tiles ``tile_side`` aims at for a small grid, so its tasks spread over several threads.
MIN_TILES = 4


def tile_side(shape: tuple[int, int], chunk: int) -> int:
    """The compute tile side for a grid of ``shape``: ``chunk``, halved (not below
    ``MIN_TILE``) while the grid has fewer than ``MIN_TILES`` tiles.

    A tile's observation and haze tasks each run on one thread: a 2048^2 AOI in one tile kept
    one core busy for 1.7 s of haze test while the other waited (2.8 s on two threads, 2.0 s
    in four 1024^2 tiles). Larger grids keep ``chunk`` (at 4096^2, 1024^2 tiles were slower).
    The rule depends on the grid only, never on the cluster: on a grid that is not the scenes'
    own, nearest resampling per tile can move a pixel or two, so the same run must always get
    the same tiles.
    """
    side = chunk
    while side // 2 >= MIN_TILE and math.prod(math.ceil(n / side) for n in shape) < MIN_TILES:
        side //= 2
    return side


@dataclass(frozen=True)
class CompositeOptions:
    """How a composite is made; everything here is user-configurable per run.

    ``method``: ``median`` (exact, the fast engine), ``medoid``, ``geomedian`` or ``pNN``
    (percentile); ``haze``: which clear observations are still rejected as haze
    (``raster.robust``), ``HazeRule(index="none")`` for the plain composite.
    """

    mask: MaskRule
    bands: tuple[str, ...] = RGB
    resampling: str = "nearest"
    chunk: int = 2048
    clip_to_aoi: bool = True
    method: str = "median"
    haze: HazeRule = field(default_factory=HazeRule)

    def __post_init__(self) -> None:
        parse_method(self.method)
        if self.haze.active and not {"blue", "red"} <= set(self.bands):
            raise InputError(
                "haze.index",
                f"the haze test needs the blue and red bands (bands are {list(self.bands)}); "
                "set haze index to 'none' for other band sets",
            )

    def describe(self) -> dict[str, object]:
        """What made the composite: method, mask and haze rules (JSON-friendly)."""
        return {
            "method": self.method,
            "mask": self.mask.describe(),
            "haze": self.haze.describe(),
        }


@dataclass
class TimeSlice:
    """Observations fused into one time step (same solar day and same radiometry)."""

    day: date
    items: list[ResolvedItem] = field(default_factory=list)

    @property
    def first(self) -> ResolvedItem:
        return self.items[0]


def _solar_day(when: datetime, lon: float) -> date:
    return (when + timedelta(hours=lon / 15.0)).date()


def _radiometry_key(r: ResolvedItem, bands: Sequence[str]) -> tuple[Any, ...]:
    return tuple((r.bands[b].scale, r.bands[b].offset, r.bands[b].nodata) for b in bands)


def group_time_slices(
    items: Sequence[ResolvedItem], lon: float, bands: Sequence[str] = RGB
) -> list[TimeSlice]:
    """Group items into time slices: same solar day (tiles of one overpass fuse, as odc-stac's
    ``solar_day``), but never across different scale/offset."""
    groups: dict[tuple[Any, ...], TimeSlice] = {}
    for r in sorted(items, key=lambda r: (r.datetime, r.id)):
        day = _solar_day(r.datetime, lon)
        key = (day, _radiometry_key(r, bands))
        groups.setdefault(key, TimeSlice(day)).items.append(r)
    return sorted(groups.values(), key=lambda s: (s.day, s.first.datetime, s.first.id))


def _nodata_scalar(band: np.ndarray, nodata: float) -> Any:
    """Nodata as a scalar of the band's dtype, or None when no value of the dtype can match."""
    if np.isnan(nodata):
        return None
    if band.dtype.kind in "ui":
        info = np.iinfo(band.dtype)
        ok = nodata == int(nodata) and info.min <= nodata <= info.max
        return band.dtype.type(int(nodata)) if ok else None
    v = band.dtype.type(nodata)
    return v if float(v) == nodata else None


def _strips(y: int, x: int, t: int, pixels: int = 65536) -> Iterator[slice]:
    """Row strips of about ``pixels`` (64 Ki) pixels per time plane, so a strip of every plane
    stays in cache while a task works through it."""
    step = max(1, min(y, pixels // max(x, 1)))
    for y0 in range(0, y, step):
        yield slice(y0, min(y, y0 + step))


def _valid_block(
    mask: np.ndarray,
    *arrays: np.ndarray,
    nodatas: np.ndarray,
    clear: Callable[[np.ndarray], np.ndarray] | None = None,
    aoi_mask: bool = False,
) -> np.ndarray:
    """(T, y, x) observations: clear, inside the AOI, and no band at its nodata value.

    ``mask`` is the mask band, made boolean by ``clear`` (or already boolean). ``arrays`` are
    the bands, then the (y, x) AOI mask when ``aoi_mask``; ``nodatas`` is (B, T). Works strip
    by strip; unsigned bands whose nodata is 0 are tested once, on their minimum.
    """
    bands, inside = (arrays[:-1], arrays[-1]) if aoi_mask else (arrays, None)
    t, y, x = mask.shape
    valid = np.empty((t, y, x), bool)
    nd = [[_nodata_scalar(b, float(nodatas[i, j])) for j in range(t)] for i, b in enumerate(bands)]
    for ys in _strips(y, x, t):
        v = valid[:, ys]
        np.copyto(v, clear(mask[:, ys]) if clear is not None else mask[:, ys])
        if inside is not None:
            v &= inside[ys]
        for j in range(t):
            zero_nd: list[np.ndarray] = []
            for i, b in enumerate(bands):
                value = nd[i][j]
                if value is None:
                    continue
                if value == 0 and b.dtype.kind == "u":
                    zero_nd.append(b[j, ys])
                else:
                    v[j] &= b[j, ys] != value
            if zero_nd:
                lowest = zero_nd[0]
                for other in zero_nd[1:]:
                    lowest = np.minimum(lowest, other)
                v[j] &= lowest != 0
    return valid


def _median_network(t: int) -> list[tuple[int, int, bool, bool]]:
    """Compare-exchanges of Batcher's odd-even merge sort for ``t`` inputs, pruned backwards
    to those (and within those to the min or max half) that ranks t//2 - 1 and t//2 need."""
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < t:
        k = p
        while k >= 1:
            for j in range(k % p, t - k, 2 * k):
                for i in range(min(k, t - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    needed = {max(t // 2 - 1, 0), t // 2}
    network: list[tuple[int, int, bool, bool]] = []
    for i, j in reversed(pairs):
        if i in needed or j in needed:
            network.append((i, j, i in needed, j in needed))
            needed |= {i, j}
    network.reverse()
    return network


def _uint16_plan(
    band: np.ndarray, scales: np.ndarray, offsets: np.ndarray
) -> tuple[list[int], np.float32, np.float32] | None:
    """(DN shift per slice, scale, offset) to sort uint8/uint16 DN as uint16 keys, or None.

    Possible when every slice has the same scale and offsets that are whole multiples of it
    (one processing baseline, or Sentinel-2's 1000 DN shift), and shifted values fit 16 bits.
    """
    s, o = scales.astype(np.float32), offsets.astype(np.float32)
    if band.dtype not in (np.uint8, np.uint16) or not s[0] > 0 or not np.all(s == s[0]):
        return None
    ratio = o.astype(np.float64) / float(s[0])
    steps = np.rint(ratio)
    if not np.all(np.abs(ratio - steps) < 1e-3):
        return None
    shift = [int(d) for d in steps - steps.min()]
    top = [int(band[j].max(initial=0)) + d if d else 0 for j, d in enumerate(shift)]
    if max(top, default=0) > 0xFFFF:
        return None
    return shift, s[0], o[int(np.argmin(steps))]


def _balance(valid: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sentinel masks for the median of the valid values at fixed ranks: of a pixel's T - n
    non-observations, the first (T - n) // 2 in time order sort low and the others high.
    Returns (low, high, odd count, no observation)."""
    t = valid.shape[0]
    count_dtype = np.uint8 if t < 256 else np.int32
    n = valid.sum(axis=0, dtype=count_dtype)
    n_low = (count_dtype(t) - n) >> 1
    seen = np.zeros_like(n)
    invalid = ~valid
    low = np.empty_like(valid)
    for j in range(t):
        np.less(seen, n_low, out=low[j])
        low[j] &= invalid[j]
        seen += invalid[j]
    return low, invalid ^ low, (n & 1).astype(bool), n == 0


def _median_block(
    valid: np.ndarray, band: np.ndarray, *, scales: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """(T, y, x) observations (``_valid_block``) and DN → (y, x) float32 median reflectance,
    NaN where there is no observation.

    Equals ``numpy.nanmedian`` of ``float32(DN) * scale + offset`` over the observations,
    without transposes or per-pixel calls: a pixel's n observations are padded to T values
    with ``(T - n) // 2`` low and the rest high sentinels, which puts their median at the fixed
    ranks T//2 - 1 and T//2 of all T values; a selection network (the part of Batcher's merge
    sort those two ranks need) then finds them with vectorised min/max over whole time planes,
    row strip by row strip so the planes stay in cache. uint8/uint16 DN are sorted as uint16
    keys when the slices' radiometry allows (see ``_uint16_plan``), and only the two selected
    planes become float; other inputs sort float32 reflectance (NaN data is not an observation,
    as in ``nanmedian``). Bit-identical to ``numpy.nanmedian`` except with mixed offsets, where
    a value can differ by one float32 ulp (it is converted with the lowest offset's radiometry).
    """
    t, y, x = valid.shape
    if t == 0:
        return np.full((y, x), np.nan, np.float32)
    out = np.empty((y, x), np.float32)
    network = _median_network(t)
    rank_a, rank_b = max(t // 2 - 1, 0), t // 2
    plan = _uint16_plan(band, scales, offsets)
    s, o = scales.astype(np.float32), offsets.astype(np.float32)
    strip = next(_strips(y, x, t)).stop
    keys16 = np.empty((t + 1, strip, x), np.uint16) if plan is not None else None
    keys32 = np.empty((t + 1, strip, x), np.float32) if plan is None else None
    for ys in _strips(y, x, t):
        h = ys.stop - ys.start
        v = valid[:, ys]
        low, high, odd, none = _balance(v)
        if plan is not None:
            assert keys16 is not None
            keys = keys16[:, :h]
            high16 = np.negative(high.view(np.uint8), dtype=np.uint16)  # 0xFFFF: force high
            keep16 = np.subtract(low.view(np.uint8), 1, dtype=np.uint16)  # 0: force low
            for j, d in enumerate(plan[0]):
                if d:
                    np.add(band[j, ys], np.uint16(d), out=keys[j], dtype=np.uint16)
                    keys[j] |= high16[j]
                else:
                    np.bitwise_or(band[j, ys], high16[j], out=keys[j], dtype=np.uint16)
                keys[j] &= keep16[j]
        else:
            assert keys32 is not None
            keys = keys32[:, :h]
            for j in range(t):
                np.multiply(band[j, ys], s[j], out=keys[j], dtype=np.float32, casting="unsafe")
                keys[j] += o[j]
            nan = np.isnan(keys[:t])
            if nan.any():  # NaN data: not an observation for this band's median
                low, high, odd, none = _balance(v & ~nan)
            np.copyto(keys[:t], np.float32(-np.inf), where=low)
            np.copyto(keys[:t], np.float32(np.inf), where=high)
        # Rank r lives in keys[row_of[r]]; the spare row receives each new minimum.
        row_of = list(range(t))
        spare = t
        for i_lo, i_hi, want_min, want_max in network:
            a, c = keys[row_of[i_lo]], keys[row_of[i_hi]]
            if want_min:
                np.minimum(a, c, out=keys[spare])
                row_of[i_lo], spare = spare, row_of[i_lo]
            if want_max:
                np.maximum(a, c, out=c)
        va = keys[row_of[rank_a]].astype(np.float32)
        vb = keys[row_of[rank_b]].astype(np.float32)
        if plan is not None:
            for val in (va, vb):
                val *= plan[1]
                val += plan[2]
        with np.errstate(invalid="ignore"):  # -inf + inf where there is no observation
            med = va + vb
        med *= np.float32(0.5)
        np.copyto(med, vb if t % 2 else va, where=odd)
        np.copyto(med, np.float32(np.nan), where=none)
        out[ys] = med
    return out


def _count_block(valid: np.ndarray) -> np.ndarray:
    return valid.sum(axis=0, dtype=np.uint16)


def load_stack(
    slices: Sequence[TimeSlice],
    geobox: GeoBox,
    options: CompositeOptions,
) -> tuple[xr.Dataset, bool]:
    """Lazy (time, y, x) Dask-backed dataset with the bands, ``mask`` and maybe ``radsat``."""
    radsat = (
        options.mask.kind == "qa_pixel"
        and options.mask.use_radsat
        and all("radsat" in r.extra_masks for s in slices for r in s.items)
    )
    # Archived items are keyed by role with their radiometry in ``raster:bands``
    # (``archive.ingest.archived_item``): odc-stac parses them as they are.
    items = [[r.item for r in s.items] for s in slices]
    measurements = [*options.bands, "mask"] + (["radsat"] if radsat else [])
    resampling = {"mask": "nearest", "radsat": "nearest", "*": options.resampling}
    ds = load_slices(
        items,
        [s.first.datetime for s in slices],
        measurements,
        geobox,
        options.chunk,
        resampling,
    )
    return ds, radsat


def _inside_block(geometry: Geometry, geobox: GeoBox, block_info: Any = None) -> np.ndarray:
    """The AOI mask of one tile (pixel centres inside the polygon, as ``rasterize`` of the
    whole grid)."""
    (ys, xs) = block_info[None]["array-location"]
    return rasterize(geometry, geobox[ys[0] : ys[1], xs[0] : xs[1]]).values


def median_composite(
    items: Sequence[ResolvedItem],
    geobox: GeoBox,
    options: CompositeOptions,
    aoi_geometry: Geometry | None = None,
) -> xr.Dataset:
    """Lazy monthly median composite: float32 reflectance per band plus ``clear_count`` (uint16).

    Pixels with no clear observation are NaN in every band and 0 in the count. With
    ``clip_to_aoi``, pixels outside the AOI polygon are treated the same way.
    """
    if not items:
        raise ValueError("median_composite needs at least one item")
    lon = float(geobox.extent.centroid.to_crs("EPSG:4326").coords[0][0])
    slices = group_time_slices(items, lon, options.bands)
    options = replace(options, chunk=tile_side(tuple(geobox.shape), options.chunk))
    ds, radsat = load_stack(slices, geobox, options)

    scales = np.array([[s.first.bands[b].scale for s in slices] for b in options.bands], "float32")
    offsets = np.array(
        [[s.first.bands[b].offset for s in slices] for b in options.bands], "float32"
    )
    nodatas = np.array(
        [
            [np.nan if s.first.bands[b].nodata is None else s.first.bands[b].nodata for s in slices]
            for b in options.bands
        ],
        "float64",
    )
    rule = options.mask
    mask = ds["mask"].data
    # The mask band is turned into "clear" inside the observation task, strip by strip, unless
    # saturation or the cloud clean-up need it as a whole array first.
    clear, clear_fn = mask, rule.clear
    if rule.halo:
        # Clean-up (opening, dilation) of the cloud classes only, with the neighbourhood it
        # needs from adjacent tiles; no padding beyond the grid (nothing is known there).
        depth = {0: 0, 1: rule.halo, 2: rule.halo}
        clear = da.map_overlap(rule.cleaned_clear, mask, depth=depth, boundary="none", dtype=bool)
        clear_fn = None
    elif radsat:
        clear, clear_fn = da.map_blocks(rule.clear, mask, dtype=bool), None
    if radsat:
        clear = clear & da.map_blocks(qa_radsat_clear, ds["radsat"].data, dtype=bool)
    # Per tile: one task for the observations (mask, AOI, nodata), maybe one for the haze test,
    # then one task per band for the median (they run in parallel) and the count; every task
    # sees all time slices of its tile.
    band_data = [ds[b].data for b in options.bands]
    inputs: list[Any] = [clear, "tyx", *(a for d in band_data for a in (d, "tyx"))]
    if options.clip_to_aoi and aoi_geometry is not None:
        # Rasterized per tile by its own task: a whole-AOI array would be embedded in the graph.
        inside = da.map_blocks(
            _inside_block, chunks=mask.chunks[1:], dtype=bool, geometry=aoi_geometry, geobox=geobox
        )
        inputs += [inside, "yx"]
    valid = da.blockwise(
        _valid_block,
        "tyx",
        *inputs,
        dtype=bool,
        nodatas=nodatas,
        clear=clear_fn,
        aoi_mask=len(inputs) > 2 * (1 + len(band_data)),
    )
    if options.haze.active:
        ib, ir = options.bands.index("blue"), options.bands.index("red")
        valid = da.blockwise(
            _haze_block,
            "tyx",
            valid,
            "tyx",
            band_data[ib],
            "tyx",
            band_data[ir],
            "tyx",
            dtype=bool,
            scales=scales[[ib, ir]],
            offsets=offsets[[ib, ir]],
            rule=options.haze,
        )
    coords = {k: v for k, v in ds.coords.items() if "time" not in v.dims and k != "time"}
    kind, q = parse_method(options.method)
    label = f"monthly {q:g}th percentile" if kind == "percentile" else f"monthly {kind}"
    planes = _reduce(kind, q, valid, band_data, scales, offsets, slices)
    data_vars: dict[str, xr.DataArray] = {}
    for b, plane in zip(options.bands, planes, strict=False):
        data_vars[b] = xr.DataArray(
            plane,
            dims=("y", "x"),
            coords=coords,
            attrs={"units": "1", "long_name": f"{b} surface reflectance ({label})"},
        )
    recipe = options.describe()
    data_vars[COUNT_BAND] = xr.DataArray(
        da.blockwise(_count_block, "yx", valid, "tyx", concatenate=True, dtype=np.uint16),
        dims=("y", "x"),
        coords=coords,
        attrs={
            "long_name": "number of clear observations used",
            "method": options.method,
            "mask_rule": json.dumps(recipe["mask"], sort_keys=True),
            "haze_rule": json.dumps(recipe["haze"], sort_keys=True),
        },
    )
    if kind == "medoid":
        data_vars[SOURCE_DATE_BAND] = xr.DataArray(
            planes[-1],
            dims=("y", "x"),
            coords=coords,
            attrs={"long_name": "solar day of the medoid observation", "units": SOURCE_DATE_UNITS},
        )
    result = xr.Dataset(data_vars)
    result.attrs["observations"] = len(slices)
    result.attrs["recipe"] = json.dumps(recipe, sort_keys=True)
    return result


def _reduce(
    kind: str,
    q: float | None,
    valid: da.Array,
    band_data: list[da.Array],
    scales: np.ndarray,
    offsets: np.ndarray,
    slices: Sequence[TimeSlice],
) -> list[da.Array]:
    """Per-band (y, x) results of the method (medoid: the bands, then the source day)."""
    if kind == "median":
        return [
            da.blockwise(
                _median_block,
                "yx",
                valid,
                "tyx",
                band_data[i],
                "tyx",
                concatenate=True,
                dtype=np.float32,
                scales=scales[i],
                offsets=offsets[i],
            )
            for i in range(len(band_data))
        ]
    if kind == "percentile":
        return [
            da.blockwise(
                _percentile_task,
                "yx",
                valid,
                "tyx",
                band_data[i],
                "tyx",
                concatenate=True,
                dtype=np.float32,
                q=q,
                scales=scales[i],
                offsets=offsets[i],
            )
            for i in range(len(band_data))
        ]
    n_out = len(band_data) + (1 if kind == "medoid" else 0)
    epoch = date(1970, 1, 1)
    days = np.array([(s.day - epoch).days for s in slices], np.float32)
    stacked = da.blockwise(
        _multiband_task,
        "byx",
        valid,
        "tyx",
        *(a for d in band_data for a in (d, "tyx")),
        new_axes={"b": n_out},
        concatenate=True,
        dtype=np.float32,
        kind=kind,
        scales=scales,
        offsets=offsets,
        days=days,
    )
    return [stacked[i] for i in range(n_out)]


def _haze_block(
    valid: np.ndarray,
    blue: np.ndarray,
    red: np.ndarray,
    *,
    scales: np.ndarray,
    offsets: np.ndarray,
    rule: HazeRule,
) -> np.ndarray:
    """Observations minus those the haze rule rejects (``raster.robust``).

    Every operation is per pixel along time, so the tile is worked through in row strips of
    ``HAZE_STRIP_PIXELS`` per time plane: the float32 reflectance and index stacks of a strip
    stay small, where whole-tile stacks (four T x c x c float32 arrays) were most of a worker's
    peak memory. The result is the same as over the whole tile at once.
    """
    t, y, x = valid.shape
    ones, zeros = np.ones(t, "float32"), np.zeros(t, "float32")
    out = np.empty_like(valid)
    for ys in _strips(y, x, t, HAZE_STRIP_PIXELS):
        v = valid[:, ys]
        b = reflectance(v, blue[:, ys], scales[0], offsets[0])
        r = reflectance(v, red[:, ys], scales[1], offsets[1])
        index = haze_index(b, r, rule.index)
        del b, r
        ok = v & ~np.isnan(index)
        median = _median_block(ok, index, scales=ones, offsets=zeros)
        out[:, ys] = reject_hazy(ok, index, median, rule)
    return out


def _percentile_task(
    valid: np.ndarray,
    band: np.ndarray,
    *,
    q: float,
    scales: np.ndarray,
    offsets: np.ndarray,
) -> np.ndarray:
    return percentile_block(reflectance(valid, band, scales, offsets), q)


def _multiband_task(
    valid: np.ndarray,
    *bands: np.ndarray,
    kind: str,
    scales: np.ndarray,
    offsets: np.ndarray,
    days: np.ndarray,
) -> np.ndarray:
    stacks = [reflectance(valid, b, scales[i], offsets[i]) for i, b in enumerate(bands)]
    if kind == "medoid":
        return medoid_block(stacks, days)
    return geomedian_block(stacks)
