"""Benchmark of the compositing engine against the decode floor and a naive xarray median.

Run ``python benchmarks/composite_bench.py`` (full) or ``--quick`` (small workload for CI, same
result keys). A synthetic but realistic Sentinel-2-like workload is generated once into
``benchmarks/work/`` (reused when present): N scenes of red/green/blue uint16 + SCL uint8 COGs
(deflate, 512 px tiles) on one UTM grid at 10 m, with cloud/shadow blobs from smoothed random
fields (about 30 % of pixels masked), a nodata wedge on some scenes, and pystac Items whose
``raster:bands`` mix offsets 0 and -0.1 (two processing baselines).

Rows, all on the same 2 cores (2 threads), page cache warm, each row in fresh processes, best
of N runs:

* decode floor: rasterio reads every input pixel of the AOI (threads over files, nothing else);
* naive: ``odc.stac.load`` (chunks as in the odc-stac docs) then ``where(mask)``, per-time
  scale/offset and ``.median("time", skipna=True)`` in xarray, ``.compute()``;
* engine: ``rgb_assets.core.raster.compositing.median_composite(...).compute()``.

The engine is checked against ``numpy.nanmedian`` computed from rasterio reads (independent of
odc-stac), and against the naive result. Peak RSS is measured in fresh subprocesses that stream
the engine's composite to Zarr with ``rgb_assets.core.raster.writers.write_zarr`` for a small and a
16x larger AOI (threaded scheduler, 2 threads, as inside one Dagster step).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results"

GEN_VERSION = 1
EPSG = 32633
ORIGIN = (399960.0, 5300040.0)  # upper-left corner, like Sentinel-2 tile 33TUN
RES = 10.0
TILE = 512
THREADS = 2
BANDS = ("red", "green", "blue")
BAND_IDS = {"red": "B04", "green": "B03", "blue": "B02"}
SCALE = 1e-4
#: Fraction of masked pixels aimed at per scene (mean 0.30 over 12 and over the first 6).
MASK_TARGETS = (0.12, 0.45, 0.25, 0.30, 0.50, 0.18, 0.35, 0.22, 0.40, 0.28, 0.15, 0.38)
DAYS = (1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28)
#: Shadows are the cloud mask displaced by this many pixels (clouds ~2 km up, sun from SW).
SHADOW_SHIFT = (140, 190)

# Targets of the brief.
MAX_ENGINE_OVER_DECODE = 2.0
MIN_SPEEDUP_VS_NAIVE = 3.0
MAX_PEAK_RSS_MB = 2048.0
MAX_RSS_GROWTH = 1.25
MAX_ABS_DIFF = 1e-6


@dataclass(frozen=True)
class Workload:
    name: str
    scenes: int
    scene_px: int
    speed_px: int  # AOI side for the decode / naive / engine rows
    rss_px: tuple[int, int]  # AOI sides for the two peak-RSS subprocesses
    ref_windows: int  # 0: numpy reference on the whole speed AOI, else N random windows
    ref_window_px: int
    repeats: int
    naive_repeats: int

    @property
    def dir(self) -> Path:
        return WORK / f"{self.name}-{self.scenes}x{self.scene_px}"


FULL = Workload("full", 12, 8192, 4096, (2048, 8192), 8, 256, 3, 2)
QUICK = Workload("quick", 6, 4096, 2048, (2048, 4096), 0, 0, 2, 1)


# --------------------------------------------------------------------------------------------
# Workload generation
# --------------------------------------------------------------------------------------------


def _lerp_up(coarse: np.ndarray, size: int) -> np.ndarray:
    """Upsample a (n+1, n+1) lattice to (size, size) with smoothstep interpolation."""
    n = coarse.shape[0] - 1
    pos = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(n / size)
    i0 = np.minimum(pos.astype(np.int64), n - 1)
    f = pos - i0
    f = f * f * (3 - 2 * f)
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    out = rows[:, i0] * (1 - f)[None, :]
    out += rows[:, i0 + 1] * f[None, :]
    return out


def smooth_field(
    rng: np.random.Generator, size: int, octaves: Sequence[tuple[int, float]]
) -> np.ndarray:
    """Sum of smoothed Gaussian lattices; ``octaves`` are (feature size in px, weight)."""
    out = np.zeros((size, size), np.float32)
    for feature_px, weight in octaves:
        cells = max(1, size // feature_px)
        lattice = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
        out += np.float32(weight) * _lerp_up(lattice, size)
    out -= out.mean()
    out /= out.std()
    return out


def _quantile(a: np.ndarray, q: float) -> float:
    return float(np.quantile(a[::7, ::7], q))


def _scene_paths(root: Path, i: int) -> dict[str, Path]:
    return {k: root / "scenes" / f"scene{i:02d}_{k}.tif" for k in (*BANDS, "mask")}


def _write_cog(path: Path, array: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(
        path,
        "w",
        driver="COG",
        height=array.shape[0],
        width=array.shape[1],
        count=1,
        dtype=array.dtype.name,
        crs=f"EPSG:{EPSG}",
        transform=from_origin(*ORIGIN, RES, RES),
        nodata=0,
        compress="deflate",
        predictor="yes",
        blocksize=TILE,
        overviews="none",
        num_threads=1,
    ) as dst:
        dst.write(array, 1)


def _make_base(root: Path, size: int, seed: int) -> None:
    """Ground truth shared by all scenes: per-band DN (500-3500) and the SCL surface class."""
    rng = np.random.default_rng(seed)
    land = smooth_field(rng, size, [(2048, 1.0), (512, 0.6), (128, 0.35), (32, 0.2), (8, 0.1)])
    tex = smooth_field(rng, size, [(256, 1.0), (64, 0.6), (16, 0.4), (4, 0.25)])
    t = 1 / (1 + np.exp(-tex))  # 0..1 texture within a land-cover class
    water = land < _quantile(land, 0.08)
    bare = land > _quantile(land, 0.62)
    ranges = {  # (water, vegetation, bare): (low, span) in DN
        "red": ((500, 150), (550, 450), (1800, 1700)),
        "green": ((650, 150), (850, 450), (1600, 1300)),
        "blue": ((800, 200), (500, 300), (1250, 1000)),
    }
    for band, ((wl, ws), (vl, vs), (bl, bs)) in ranges.items():
        dn = np.where(water, wl + ws * t, np.where(bare, bl + bs * t, vl + vs * t))
        np.save(root / f"base_{band}.npy", dn.astype(np.float32))
    scl = np.where(water, 6, np.where(bare, 5, 4)).astype(np.uint8)
    np.save(root / "base_scl.npy", scl)


def _make_scene(root: Path, base: Path, i: int, size: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed + 1000 + i)
    target = MASK_TARGETS[i % len(MASK_TARGETS)]
    cloud_frac = target / 1.35
    field = smooth_field(rng, size, [(1024, 1.0), (256, 0.5), (64, 0.25), (16, 0.12), (4, 0.05)])
    t_edge = _quantile(field, 1 - cloud_frac)
    t_mid = _quantile(field, 1 - 0.8 * cloud_frac)
    t_thick = _quantile(field, 1 - 0.5 * cloud_frac)
    cloud = field > t_edge
    dy, dx = SHADOW_SHIFT
    shadow = np.zeros_like(cloud)
    shadow[dy:, dx:] = cloud[:-dy, :-dx]
    shadow &= ~cloud
    scl = np.load(base / "base_scl.npy")
    scl[shadow] = 3
    scl[cloud] = 10
    scl[field > t_mid] = 8
    scl[field > t_thick] = 9
    wedge = None
    if i % 5 == 3:  # orbit edge: no data in one corner
        yy, xx = np.ogrid[:size, :size]
        wedge = (yy + xx) < int(0.35 * size)
        scl[wedge] = 0
    offset = -0.1 if i % 2 else 0.0
    gain = np.float32(1 + 0.03 * rng.standard_normal())
    brightness = np.clip(field - t_edge, 0, None) * np.float32(1200)
    for band in BANDS:
        dn = np.load(base / f"base_{band}.npy", mmap_mode="r") * gain
        dn += rng.standard_normal((size, size), dtype=np.float32) * np.float32(40)
        dn[shadow] *= np.float32(0.45)
        dn[cloud] = np.maximum(dn[cloud], 2600) + brightness[cloud]
        np.clip(dn, 100, 4000, out=dn)
        if offset:
            dn += 1000  # baseline >= 04.00: DN = 10000 * reflectance + 1000
        out = np.rint(dn).astype(np.uint16)
        if wedge is not None:
            out[wedge] = 0
        _write_cog(_scene_paths(root, i)[band], out)
    _write_cog(_scene_paths(root, i)["mask"], scl)
    from rgb_assets.core.raster.masking import DEFAULT_SCL_EXCLUDE

    masked = float(np.isin(scl, DEFAULT_SCL_EXCLUDE).mean())
    return {
        "masked_fraction": masked,
        "cloud_cover": 100 * float(np.isin(scl, (8, 9, 10)).mean()),
        "offset": offset,
    }


def _item(root: Path, i: int, size: int, stats: dict[str, float]) -> Any:
    import pystac
    from pyproj import Transformer
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension
    from rasterio.transform import from_origin
    from shapely.geometry import Polygon, mapping

    x0, y0 = ORIGIN
    x1, y1 = x0 + size * RES, y0 - size * RES
    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True)
    ring = [to_ll.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    poly = Polygon(ring)
    offset = stats["offset"]
    when = datetime(2024, 6, DAYS[i % len(DAYS)], 10, 0, 21, tzinfo=UTC)
    baseline = "05.10" if offset else "03.01"
    item = pystac.Item(
        id=f"S2B_33TUN_{when:%Y%m%d}_0_L2A",
        geometry=mapping(poly),
        bbox=list(poly.bounds),
        datetime=when,
        properties={
            "platform": "sentinel-2b",
            "constellation": "sentinel-2",
            "eo:cloud_cover": round(stats["cloud_cover"], 2),
            "s2:processing_baseline": baseline,
            # As the archive writes them: assets keyed by role, radiometry in raster:bands.
            "rgb_assets:archive_mode": "full",
        },
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = f"EPSG:{EPSG}"
    proj.shape = [size, size]
    proj.transform = list(from_origin(x0, y0, RES, RES))[:6]
    proj.bbox = [x0, y1, x1, y0]
    EOExtension.ext(item, add_if_missing=True)
    RasterExtension.add_to(item)
    for key, path in _scene_paths(root, i).items():
        asset = pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(key, asset)
        if key == "mask":
            band = RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=RES)
        else:
            band = RasterBand.create(
                nodata=0,
                data_type=DataType.UINT16,
                spatial_resolution=RES,
                scale=SCALE,
                offset=offset,
            )
            EOExtension.ext(asset).bands = [Band.create(name=BAND_IDS[key], common_name=key)]
        RasterExtension.ext(asset).bands = [band]
    return item


def ensure_workload(w: Workload, regenerate: bool = False) -> dict[str, Any]:
    """Generate the workload unless a matching one is already on disk; return its manifest."""
    manifest_path = w.dir / "manifest.json"
    wanted = {"version": GEN_VERSION, "scenes": w.scenes, "scene_px": w.scene_px}
    if manifest_path.exists() and not regenerate:
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in wanted} == wanted:
            return manifest
    shutil.rmtree(w.dir, ignore_errors=True)
    (w.dir / "scenes").mkdir(parents=True)
    (w.dir / "items").mkdir()
    base = w.dir / "_base"
    base.mkdir()
    t0 = time.perf_counter()
    print(f"generating workload {w.dir.name} ({w.scenes} scenes of {w.scene_px}^2) ...", flush=True)
    seed = 20240601
    _make_base(base, w.scene_px, seed)
    with ProcessPoolExecutor(THREADS) as ex:
        futures = [
            ex.submit(_make_scene, w.dir, base, i, w.scene_px, seed) for i in range(w.scenes)
        ]
        stats = [f.result() for f in futures]
    shutil.rmtree(base)
    items = []
    for i, s in enumerate(stats):
        item = _item(w.dir, i, w.scene_px, s)
        path = w.dir / "items" / f"{item.id}.json"
        path.write_text(json.dumps(item.to_dict(include_self_link=False), indent=1))
        items.append(str(path))
    manifest = wanted | {
        "items": items,
        "masked_fraction": [round(s["masked_fraction"], 4) for s in stats],
        "offsets": [s["offset"] for s in stats],
        "generation_s": round(time.perf_counter() - t0, 1),
        "bytes_on_disk": sum(p.stat().st_size for p in (w.dir / "scenes").iterdir()),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"  done in {manifest['generation_s']} s", flush=True)
    return manifest


# --------------------------------------------------------------------------------------------
# The three ways to compute the composite, and the numpy reference
# --------------------------------------------------------------------------------------------


def full_geobox(scene_px: int) -> Any:
    from affine import Affine
    from odc.geo.geobox import GeoBox

    return GeoBox((scene_px, scene_px), Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1]), EPSG)


def aoi_window(scene_px: int, px: int) -> tuple[int, int]:
    """Top-left (row, col) of a centred, tile-aligned AOI of ``px`` squared."""
    off = (scene_px - px) // 2 // TILE * TILE
    return off, off


def aoi_geobox(scene_px: int, px: int) -> Any:
    r, c = aoi_window(scene_px, px)
    return full_geobox(scene_px)[r : r + px, c : c + px]


def load_items(manifest: dict[str, Any]) -> list[Any]:
    import pystac

    items = [pystac.Item.from_file(p) for p in manifest["items"]]
    return sorted(items, key=lambda it: it.datetime)


def _radiometry(items: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per item (time order) and band: float32 scale and offset from ``raster:bands``."""
    fields = [[it.assets[b].extra_fields["raster:bands"][0] for b in BANDS] for it in items]
    scales = [[f["scale"] for f in row] for row in fields]
    offsets = [[f["offset"] for f in row] for row in fields]
    return np.array(scales, np.float32), np.array(offsets, np.float32)


def decode_floor(items: Sequence[Any], scene_px: int, px: int) -> int:
    """Read and decode every input pixel of the AOI with rasterio; threads over files."""
    import rasterio
    from rasterio.windows import Window

    r, c = aoi_window(scene_px, px)
    window = Window(c, r, px, px)
    hrefs = [it.assets[k].href for it in items for k in (*BANDS, "mask")]

    def read(href: str) -> int:
        with rasterio.open(href) as src:
            return int(src.read(1, window=window)[0, 0])

    with ThreadPoolExecutor(THREADS) as ex:
        return sum(ex.map(read, hrefs))


def naive_composite(items: Sequence[Any], geobox: Any) -> Any:
    """What a skilled xarray user writes: load, mask with ``where``, scale, median, compute."""
    import odc.stac
    import xarray as xr

    from rgb_assets.core.raster.masking import DEFAULT_SCL_EXCLUDE

    ds = odc.stac.load(
        items,
        bands=[*BANDS, "mask"],
        geobox=geobox,
        chunks={"x": 2048, "y": 2048},
        groupby="solar_day",
    )
    if ds.sizes["time"] != len(items):
        raise RuntimeError("expected one time step per item")
    scales, offsets = _radiometry(items)
    valid = ~ds["mask"].isin(list(DEFAULT_SCL_EXCLUDE))
    for b in BANDS:
        valid = valid & (ds[b] != 0)
    out: dict[str, Any] = {}
    for j, b in enumerate(BANDS):
        scale = xr.DataArray(scales[:, j], dims="time")
        offset = xr.DataArray(offsets[:, j], dims="time")
        refl = ds[b].where(valid).astype(np.float32) * scale + offset
        out[b] = refl.median("time", skipna=True)
    out["clear_count"] = valid.sum("time").astype(np.uint16)
    return xr.Dataset(out).compute()


def engine_options(chunk: int | None) -> Any:
    from rgb_assets.core.raster.compositing import PLAIN_HAZE, CompositeOptions
    from rgb_assets.core.raster.masking import MaskRule

    # The plain SCL median (no cloud clean-up, no haze test): what this benchmark times and
    # checks against numpy.nanmedian. The other methods and rules: benchmarks/methods_bench.py.
    options = CompositeOptions(mask=MaskRule("scl", opening=0, dilation=0), haze=PLAIN_HAZE)
    return options if chunk is None else replace(options, chunk=chunk)


def engine_lazy(items: Sequence[Any], geobox: Any, chunk: int | None) -> Any:
    """The project's engine, called as the pipeline does (resolved items, AOI polygon)."""
    from rgb_assets.core.domain.collection_specs import SENTINEL2_L2A, resolve_item
    from rgb_assets.core.raster.compositing import median_composite

    resolved = [resolve_item(it, SENTINEL2_L2A) for it in items]
    return median_composite(resolved, geobox, engine_options(chunk), aoi_geometry=geobox.extent)


def engine_composite(items: Sequence[Any], geobox: Any, chunk: int | None) -> Any:
    return engine_lazy(items, geobox, chunk).compute()


def numpy_reference(
    items: Sequence[Any], row: int, col: int, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """(3, h, w) float32 ``np.nanmedian`` and (h, w) clear count from plain rasterio reads."""
    import rasterio
    from rasterio.windows import Window

    from rgb_assets.core.raster.masking import DEFAULT_SCL_EXCLUDE

    window = Window(col, row, w, h)

    def read(href: str) -> np.ndarray:
        with rasterio.open(href) as src:
            return src.read(1, window=window)

    scales, offsets = _radiometry(items)
    dn = np.stack([np.stack([read(it.assets[b].href) for b in BANDS]) for it in items])
    scl = np.stack([read(it.assets["mask"].href) for it in items])
    valid = ~np.isin(scl, DEFAULT_SCL_EXCLUDE) & (dn != 0).all(axis=1)
    refl = dn.astype(np.float32) * scales[:, :, None, None] + offsets[:, :, None, None]
    refl[~np.broadcast_to(valid[:, None], refl.shape)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        med = np.nanmedian(refl, axis=0)
    return med.astype(np.float32), valid.sum(axis=0)


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b| where both are finite; inf if NaN positions differ."""
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    ok = ~np.isnan(a)
    return float(np.abs(a[ok].astype(np.float64) - b[ok]).max()) if ok.any() else 0.0


def compare_to_numpy(w: Workload, items: Sequence[Any], engine: Any) -> dict[str, Any]:
    r0, c0 = aoi_window(w.scene_px, w.speed_px)
    if w.ref_windows == 0:
        windows = [(0, 0, w.speed_px, w.speed_px)]
    else:
        rng = np.random.default_rng(7)
        n = w.ref_window_px
        windows = [
            (int(rng.integers(0, w.speed_px - n)), int(rng.integers(0, w.speed_px - n)), n, n)
            for _ in range(w.ref_windows)
        ]
    diff, count_mismatch, pixels = 0.0, 0, 0
    for r, c, h, wd in windows:
        med, count = numpy_reference(items, r0 + r, c0 + c, h, wd)
        got = np.stack([engine[b].values[r : r + h, c : c + wd] for b in BANDS])
        diff = max(diff, _max_abs_diff(med, got))
        got_count = engine["clear_count"].values[r : r + h, c : c + wd]
        count_mismatch += int((got_count != count).sum())
        pixels += h * wd
    return {
        "max_abs_diff_vs_numpy": diff,
        "count_mismatch_vs_numpy": count_mismatch,
        "numpy_reference_pixels": pixels,
        "numpy_reference_windows": len(windows),
    }


def compare_naive(naive: Any, engine: Any) -> dict[str, Any]:
    diff = max(_max_abs_diff(naive[b].values, engine[b].values) for b in BANDS)
    mismatch = int((naive["clear_count"].values != engine["clear_count"].values).sum())
    return {"max_abs_diff_engine_vs_naive": diff, "count_mismatch_engine_vs_naive": mismatch}


# --------------------------------------------------------------------------------------------
# Peak RSS in a fresh subprocess (engine streamed to Zarr)
# --------------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's high-water RSS. VmHWM belongs to the current address space; ru_maxrss
    would also report the parent's size at fork, since Linux carries it over exec."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(workload_dir: Path, px: int, store: Path, chunk: int | None) -> dict[str, Any]:
    import dask
    import odc.stac  # noqa: F401  (imported before the baseline RSS is taken)
    import psutil
    import xarray  # noqa: F401

    import rgb_assets.core.raster.compositing  # noqa: F401
    from rgb_assets.core.raster.writers import write_zarr

    manifest = json.loads((workload_dir / "manifest.json").read_text())
    items = load_items(manifest)
    geobox = aoi_geobox(int(manifest["scene_px"]), px)
    rss_start = psutil.Process().memory_info().rss / 2**20
    with dask.config.set(scheduler="threads", num_workers=THREADS):
        t0 = time.perf_counter()
        write_zarr(engine_lazy(items, geobox, chunk), store)
        seconds = time.perf_counter() - t0
    return {
        "px": px,
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_imports_mb": rss_start,
        "chunk": engine_options(chunk).chunk,
    }


def measure_rss(w: Workload, px: int, chunk: int | None) -> dict[str, Any]:
    import xarray as xr

    store = w.dir / f"rss_{px}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(w.dir), str(px)]
    cmd += [str(store)] + (["--chunk", str(chunk)] if chunk else [])
    # The environment the project's Dask workers get (the nanny's variables, then the malloc
    # settings of rgb_assets.cluster), so the child's heap behaves like that of the Dask worker
    # running a Dagster step.
    import dask
    import distributed  # noqa: F401  (registers the distributed config defaults)

    from rgb_assets.cluster import WORKER_MALLOC
    from rgb_assets.config import child_environment

    nanny = dask.config.get("distributed.nanny.pre-spawn-environ")
    env = child_environment({k: str(v) for k, v in nanny.items() if v is not None} | WORKER_MALLOC)
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    with xr.open_zarr(store) as z:
        if z["red"].shape != (px, px) or not np.isfinite(z["red"][:256, :256].values).any():
            raise RuntimeError(f"unexpected zarr output in {store}")
    shutil.rmtree(store)
    return result


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import psutil

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import rasterio

    names = ("numpy", "dask", "xarray", "odc-stac", "odc-geo", "rasterio", "bottleneck", "zarr")
    out = {p: version(p) for p in names}
    out["gdal"] = rasterio.__gdal_version__
    try:
        out["numbagg"] = version("numbagg")
    except PackageNotFoundError:
        out["numbagg"] = "not installed"
    return out


ROWS = ("decode_floor", "engine", "naive")


def time_child(
    workload_dir: Path, name: str, px: int, repeats: int, chunk: int | None, save: Path | None
) -> dict[str, Any]:
    """Time ``repeats`` runs of one row after a warm-up; save the last composite if asked."""
    import dask

    manifest = json.loads((workload_dir / "manifest.json").read_text())
    scene_px = int(manifest["scene_px"])
    items = load_items(manifest)
    geobox = aoi_geobox(scene_px, px)
    fns: dict[str, Callable[[Any], Any]] = {
        "decode_floor": lambda g: decode_floor(items, scene_px, g.shape[0]),
        "engine": lambda g: engine_composite(items, g, chunk),
        "naive": lambda g: naive_composite(items, g),
    }
    fn = fns[name]
    walls, cpus, result = [], [], None
    with dask.config.set(scheduler="threads", num_workers=THREADS):
        fn(aoi_geobox(scene_px, 1024))  # imports, GDAL and thread pools warm
        for _ in range(repeats):
            result = None
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            result = fn(geobox)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    if save is not None and name != "decode_floor" and result is not None:
        np.savez(save, **{str(k): v.values for k, v in result.data_vars.items()})
    return {"walls": walls, "cpus": cpus}


def time_row(w: Workload, name: str, repeats: int, chunk: int | None) -> dict[str, Any]:
    save = w.dir / f"{name}_result.npz"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--time-child", str(w.dir), name]
    cmd += [str(w.speed_px), str(repeats), str(save)] + (["--chunk", str(chunk)] if chunk else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{name} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_result(path: Path) -> Any:
    import xarray as xr

    with np.load(path) as z:
        ds = xr.Dataset({k: (("y", "x"), z[k]) for k in z.files})
    path.unlink()
    return ds


def run(w: Workload, regenerate: bool, output: Path, chunk: int | None) -> dict[str, Any]:
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    manifest = ensure_workload(w, regenerate)
    items = load_items(manifest)
    res: dict[str, Any] = {
        "mode": w.name,
        "scenes": w.scenes,
        "size_px": w.speed_px,
        "scene_px": w.scene_px,
        "bands": [*BANDS, "mask"],
        "masked_fraction": round(float(np.mean(manifest["masked_fraction"])), 3),
        "scheduler": f"dask threaded scheduler, num_workers={THREADS}",
        "engine_chunk": engine_options(chunk).chunk,
        "naive_chunks": {"time": 1, "y": 2048, "x": 2048},
    }
    # Every row runs in a fresh process with a warm page cache: a row that churns through
    # GBs (the naive baseline) leaves a heap that would tax whichever row ran next in the
    # same process. Floor and engine alternate over two rounds of processes, so a burst of
    # load from elsewhere hits both alike; each row's best run is reported.
    decode_floor(items, w.scene_px, w.speed_px)  # page cache warm
    walls: dict[str, list[float]] = {k: [] for k in ROWS}
    cpus: dict[str, list[float]] = {k: [] for k in ROWS}
    schedule = [("naive", w.naive_repeats)] + [
        (name, w.repeats) for _ in range(2) for name in ("decode_floor", "engine")
    ]
    for name, repeats in schedule:
        timing = time_row(w, name, repeats, chunk)
        walls[name] += timing["walls"]
        cpus[name] += timing["cpus"]
        runs = " ".join(f"{t:.2f}" for t in timing["walls"])
        print(f"  {name:<12} {runs} s", flush=True)
    for name in ROWS:
        res[f"{name}_s"] = min(walls[name])
        res[f"{name}_runs_s"] = walls[name]
        res[f"{name}_cpu_s"] = min(cpus[name])
    engine, naive = (load_result(w.dir / f"{name}_result.npz") for name in ("engine", "naive"))
    res |= compare_naive(naive, engine)
    del naive
    res |= compare_to_numpy(w, items, engine)
    del engine
    small, large = (measure_rss(w, px, chunk) for px in w.rss_px)
    print(f"  peak RSS {small['peak_rss_mb']:.0f} / {large['peak_rss_mb']:.0f} MB", flush=True)
    res |= {
        "peak_rss_mb_2048": small["peak_rss_mb"],
        "peak_rss_mb_8192": large["peak_rss_mb"],
        "rss_aoi_px": list(w.rss_px),
        "rss_runs": [small, large],
        "rss_method": (
            "fresh subprocess per AOI with the Dask nanny's worker environment: "
            "engine -> write_zarr, VmHWM of the child"
        ),
        "engine_zarr_s_large_aoi": large["seconds"],
    }
    res["engine_over_decode"] = res["engine_s"] / res["decode_floor_s"]
    res["engine_over_decode_cpu"] = res["engine_cpu_s"] / res["decode_floor_cpu_s"]
    res["speedup_vs_naive"] = res["naive_s"] / res["engine_s"]
    res["rss_growth"] = res["peak_rss_mb_8192"] / res["peak_rss_mb_2048"]
    targets = {
        "engine_le_2x_decode_floor": res["engine_over_decode"] <= MAX_ENGINE_OVER_DECODE,
        "engine_ge_3x_faster_than_naive": res["speedup_vs_naive"] >= MIN_SPEEDUP_VS_NAIVE,
        "equal_to_numpy_nanmedian": res["max_abs_diff_vs_numpy"] <= MAX_ABS_DIFF
        and res["count_mismatch_vs_numpy"] == 0,
        "peak_rss_le_2gb": max(small["peak_rss_mb"], large["peak_rss_mb"]) <= MAX_PEAK_RSS_MB,
        "rss_large_within_25pct_of_small": res["rss_growth"] <= MAX_RSS_GROWTH,
    }
    res["targets_met"] = targets
    res["all_targets_met"] = all(targets.values())
    res["workload"] = {
        k: manifest[k] for k in ("generation_s", "bytes_on_disk", "masked_fraction", "offsets")
    }
    res["machine"] = machine_info()
    res["loadavg_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    res["versions"] = versions()
    res["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    res["total_s"] = time.perf_counter() - t_start
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(res, indent=1) + "\n")
    return res


def print_table(res: dict[str, Any]) -> None:
    s, p, floor = res["scenes"], res["size_px"], res["decode_floor_s"]
    a, b = res["rss_aoi_px"]
    rows = [
        (f"decode floor: rasterio, {s} scenes x 4 COGs, {p}^2", f"{floor:.2f} s", "1.00x"),
        (
            "naive: odc.stac.load + where + xarray median",
            f"{res['naive_s']:.2f} s",
            f"{res['naive_s'] / floor:.2f}x",
        ),
        (
            "engine: median_composite().compute()",
            f"{res['engine_s']:.2f} s",
            f"{res['engine_over_decode']:.2f}x",
        ),
        ("engine speed-up over naive", f"{res['speedup_vs_naive']:.2f}x", ""),
        ("max |engine - numpy.nanmedian|", f"{res['max_abs_diff_vs_numpy']:.1e}", ""),
        ("max |engine - naive|", f"{res['max_abs_diff_engine_vs_naive']:.1e}", ""),
        (f"peak RSS, engine -> zarr, {a}^2 AOI", f"{res['peak_rss_mb_2048']:.0f} MB", "1.00x"),
        (
            f"peak RSS, engine -> zarr, {b}^2 AOI",
            f"{res['peak_rss_mb_8192']:.0f} MB",
            f"{res['rss_growth']:.2f}x",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'row':<{width}}  {'value':>10}  {'ratio':>6}")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>10}  {ratio:>6}")
    print()
    for name, ok in res["targets_met"].items():
        print(f"  [{'x' if ok else ' '}] {name}")
    load = res["loadavg_1min"]
    print(f"total {res['total_s']:.0f} s, load average {load['start']:.1f} -> {load['end']:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small workload for CI")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the workload")
    parser.add_argument("--chunk", type=int, help="engine chunk (default: CompositeOptions)")
    parser.add_argument("--output", type=Path, help="result JSON (default benchmarks/results/)")
    parser.add_argument(
        "--fail-on",
        choices=("targets", "correctness"),
        default="targets",
        help="exit 1 when any target is missed (default), or only when the engine's result "
        "differs from numpy.nanmedian (for shared CI machines, where timings are noisy)",
    )
    parser.add_argument(
        "--rss-child", nargs=3, metavar=("DIR", "PX", "STORE"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--time-child", nargs=5, metavar=("DIR", "ROW", "PX", "N", "SAVE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.time_child:
        d, name, px, repeats, save = args.time_child
        out = time_child(Path(d), name, int(px), int(repeats), args.chunk, Path(save))
        print(json.dumps(out))
        return 0
    if args.rss_child:
        d, px, store = args.rss_child
        print(json.dumps(rss_child(Path(d), int(px), Path(store), args.chunk)))
        return 0
    w = QUICK if args.quick else FULL
    name = "composite_bench_quick.json" if args.quick else "composite_bench.json"
    output = args.output or RESULTS / name
    if os.getloadavg()[0] > 1.0:
        print(f"note: 1-min load average {os.getloadavg()[0]:.1f}; timings may be inflated")
    res = run(w, args.regenerate, output, args.chunk)
    print_table(res)
    print(f"wrote {output}")
    if args.fail_on == "correctness":
        return 0 if res["targets_met"]["equal_to_numpy_nanmedian"] else 1
    return 0 if res["all_targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
