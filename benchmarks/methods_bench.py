"""Per-tile cost of the compositing methods and the cloud-free rules, next to the median.

Run ``python benchmarks/methods_bench.py`` (``--quick``: a smaller tile). On one in-memory
tile of T time slices x 3 uint16 bands + SCL (synthetic, Sentinel-2-like: forest reflectance,
clouds and haze as smoothed random fields), it times, single-threaded, best of N, the per-tile
functions the engine runs for each method (``raster.compositing``): the observation mask, the
exact median (selection network) of 3 bands, p25 (``numpy.nanpercentile``), the medoid, the
geometric median (geomad, one thread), and the clean-up (opening 1, dilation 2) and haze test
that the default configuration adds. No I/O: the decode floor and the median engine's ratio to
it are measured by ``composite_bench.py``. Prints a table and writes
``benchmarks/results/methods_bench[_quick].json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def workload(t: int, n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)

    def smooth(shape: tuple[int, int]) -> np.ndarray:
        small = rng.random((shape[0] // 32 + 2, shape[1] // 32 + 2))
        return np.kron(small, np.ones((32, 32)))[: shape[0], : shape[1]]

    bands = {b: np.empty((t, n, n), np.uint16) for b in ("red", "green", "blue")}
    scl = np.full((t, n, n), 4, np.uint8)
    base = {"red": 300, "green": 500, "blue": 280}
    for j in range(t):
        cloud = smooth((n, n)) > 0.75
        haze = np.clip(smooth((n, n)) - 0.6, 0, None) * 2000
        scl[j][cloud] = 9
        for b, v in base.items():
            noise = rng.normal(0, 20, (n, n))
            extra = haze * (1.0 if b == "blue" else 0.6)
            bands[b][j] = np.clip(v + noise + extra + cloud * 6000, 1, 20000)
    return {"bands": bands, "scl": scl}


def best_of(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import dask

    dask.config.set(scheduler="synchronous")
    from rgb_assets.core.raster.compositing import (
        _haze_block,
        _median_block,
        _multiband_task,
        _percentile_task,
        _valid_block,
    )
    from rgb_assets.core.raster.masking import MaskRule
    from rgb_assets.core.raster.robust import HazeRule

    t, n, runs = (8, 512, 3) if args.quick else (12, 1024, 3)
    w = workload(t, n)
    bands = [w["bands"][b] for b in ("red", "green", "blue")]
    scl = w["scl"]
    scales = np.full((3, t), 1e-4, "float32")
    offsets = np.zeros((3, t), "float32")
    nodatas = np.zeros((3, t))
    days = np.arange(t, dtype="float32") + 18000
    plain = MaskRule("scl", opening=0, dilation=0)
    default = MaskRule("scl")
    valid = _valid_block(scl, *bands, nodatas=nodatas, clear=plain.clear)

    def median() -> None:
        for i, b in enumerate(bands):
            _median_block(valid, b, scales=scales[i], offsets=offsets[i])

    def p25() -> None:
        for i, b in enumerate(bands):
            _percentile_task(valid, b, q=25, scales=scales[i], offsets=offsets[i])

    def multi(kind: str) -> Callable[[], Any]:
        return lambda: _multiband_task(
            valid, *bands, kind=kind, scales=scales, offsets=offsets, days=days
        )

    rows = {
        "observation mask (plain SCL)": lambda: _valid_block(
            scl, *bands, nodatas=nodatas, clear=plain.clear
        ),
        "cloud clean-up (opening 1, dilation 2)": lambda: default.cleaned_clear(scl),
        "haze test (HOT vs pixel median)": lambda: _haze_block(
            valid, bands[2], bands[0], scales=scales[[2, 0]], offsets=offsets[[2, 0]],
            rule=HazeRule(),
        ),
        "median, 3 bands (engine)": median,
        "p25, 3 bands": p25,
        "medoid (3 bands + source_date)": multi("medoid"),
        "geomedian (geomad, 1 thread)": multi("geomedian"),
    }
    results: dict[str, float] = {}
    for name, fn in rows.items():
        results[name] = round(best_of(fn, runs), 4)
    med = results["median, 3 bands (engine)"]
    print(f"tile: {t} time slices x {n}^2 px x 3 bands, best of {runs}, one thread")
    print(f"{'row':42s} {'seconds':>8s} {'vs median':>10s}")
    for name, s in results.items():
        print(f"{name:42s} {s:8.3f} {s / med:9.1f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "tile": {"time_slices": t, "size_px": n, "bands": 3},
        "runs": runs,
        "seconds": results,
        "ratio_to_median": {k: round(v / med, 2) for k, v in results.items()},
        "machine": {"python": platform.python_version(), "machine": platform.machine()},
    }
    name = "methods_bench_quick.json" if args.quick else "methods_bench.json"
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(f"written {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
