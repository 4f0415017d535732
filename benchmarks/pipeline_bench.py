"""The whole pipeline against its engine: what a partition costs beyond its compute.

    .venv/bin/python benchmarks/pipeline_bench.py            # full workload
    .venv/bin/python benchmarks/pipeline_bench.py --quick    # CI: small workload

Side by side in one run, on the same cores (see benchmarks/README.md):
- a realistic partition (Sentinel-2-like scenes from ``composite_bench``'s generator, one
  month) through the real pipeline (``execute_job`` on the Dask executor, persistent cluster)
  vs the engine alone: ``partition_s``, ``engine_s``, ``archive_s``, ``write_s``,
  ``overhead_ratio``;
- a demo-size partition's fixed cost on the persistent cluster: ``small_partition_s``;
- a backfill of small partitions launched at once, at most ``QUEUE_LIMIT`` runs in progress (the
  ``max_concurrent_runs`` of ``dagster.dev.yaml``), on the persistent cluster and with a
  ``LocalCluster`` per run: ``partitions_per_hour``, ``partitions_per_hour_per_run_cluster``;
- whole-run peak RSS (run process + cluster processes, sampled) at two AOI sizes;
- ``catalog_update_s_at_1000``: replacing one partition of a static catalog of 1,000.

Prints a table and writes ``benchmarks/results/pipeline_bench[_quick].json``. Exit status 1
when a run fails or outputs are missing (``--fail-on correctness``), or when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import composite_bench as cb  # noqa: E402  (the workload generator)

QUEUE_LIMIT = 4
SAMPLE_MONTHS = [
    "2017-07", "2018-04", "2018-05", "2018-07", "2018-08", "2018-10", "2019-04", "2019-06",
    "2019-07", "2019-08", "2019-09", "2019-10", "2020-05", "2020-09", "2020-03", "2020-04",
]  # fmt: skip
TARGETS = {
    "overhead_ratio": ("<=", 2.5),
    "small_partition_s": ("<=", 3.0),
    "backfill_speedup": (">=", 5.0),
    "rss_growth_4096_vs_2048": ("<=", 1.25),
    "peak_rss_mb_4096": ("<=", 3072.0),
    "catalog_update_s_at_1000": ("<=", 0.2),
}


@dataclass(frozen=True)
class Setup:
    name: str
    workload: cb.Workload
    aoi_px: tuple[int, int]  # realistic AOI side, and the larger RSS AOI side
    backfill: int


FULL = Setup("full", cb.Workload("pipeline", 12, 4096, 2048, (2048, 4096), 0, 0, 1, 1),
             (2048, 4096), 50)  # fmt: skip
QUICK = Setup("quick", cb.QUICK, (2048, 4096), 8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- one run, in its own process (as Dagster's run worker) ------------------------------------
def run_one(aoi: str, month: str) -> None:
    from dagster import DagsterInstance, execute_job, reconstructable

    from rgb_assets.core.domain.months import Month
    from rgb_assets.definitions import monthly_composite_job_def
    from rgb_assets.partitions import partition_key

    key = partition_key(aoi, Month.parse(month))
    with (
        DagsterInstance.get() as instance,
        execute_job(
            reconstructable(monthly_composite_job_def),
            instance=instance,
            tags={"dagster/partition": str(key)},
        ) as result,
    ):
        meta: dict[str, Any] = {}
        failure = None
        for event in result.all_events:
            if event.is_step_failure and failure is None:
                error = event.step_failure_data.error
                while error is not None and error.cause is not None:
                    error = error.cause  # Dagster's wrapper: the step's own error
                failure = f"{event.step_key}: {error.message.strip() if error else '?'}"
            if event.is_step_materialization:
                md = event.step_materialization_data.materialization.metadata
                meta[event.step_key] = {
                    k: getattr(v, "value", v) for k, v in md.items() if k in ("timings", "outcome")
                }
        report = {"run_id": result.run_id, "success": result.success, "meta": meta}
        print(json.dumps(report | {"failure": failure}))


class Env:
    """A DAGSTER_HOME and store of their own, the STAC source, and optionally a cluster."""

    def __init__(
        self, root: Path, stac_url: str, scheduler: str | None, read_root: Path | None = None
    ) -> None:
        self.root = root
        (root / "dagster_home").mkdir(parents=True, exist_ok=True)
        (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.vars = {
            "DAGSTER_HOME": str(root / "dagster_home"),
            "RGB_ASSETS_DEPLOYMENT": "demo",
            "RGB_ASSETS_STAC_URL": stac_url,
            "RGB_ASSETS_STORAGE_ROOT": str(root / "store"),
            "MALLOC_TRIM_THRESHOLD_": "65536",
        }
        if read_root:  # scenes outside the source catalog's folder (the shared workload)
            self.vars["RGB_ASSETS_ALLOWED_ROOTS"] = str(read_root)
        if scheduler:
            self.vars["RGB_ASSETS_DASK_SCHEDULER"] = scheduler
        else:
            self.vars.pop("RGB_ASSETS_DASK_SCHEDULER", None)

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RGB_ASSETS_")}
        return base | self.vars

    def register(self, name: str, geometry: dict) -> None:
        code = (
            "import json,sys\n"
            "from dagster import DagsterInstance\n"
            "from rgb_assets.aois import register_aoi\n"
            "from rgb_assets.config import Settings\n"
            "from rgb_assets.definitions import pipeline_resources\n"
            "s = pipeline_resources(Settings.from_env())['storage']\n"
            "with DagsterInstance.get() as i:\n"
            "    register_aoi(s.aois(), i, sys.argv[1], json.loads(sys.argv[2]), replace=True)\n"
        )
        subprocess.run(
            [sys.executable, "-c", code, name, json.dumps(geometry)],
            env=self.env(), check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip

    def launch(self, aoi: str, month: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--run-one", aoi, month],
            env=self.env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def run(self, aoi: str, month: str, watch: list[int] | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        proc = self.launch(aoi, month)
        sampler = RssSampler([proc.pid, *(watch or [])])
        sampler.start()
        out, err = proc.communicate()
        sampler.stop()
        if proc.returncode != 0:
            raise RuntimeError(f"run of {aoi} {month} crashed:\n{err[-3000:]}")
        report = json.loads(out.strip().splitlines()[-1])
        report["wall_s"] = time.perf_counter() - t0
        report["peak_rss_mb"] = sampler.peak_mb
        return report


class RssSampler(threading.Thread):
    """Peak of the summed RSS of some processes and all their descendants."""

    def __init__(self, pids: list[int], every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pids, self.every_s = pids, every_s
        self.peak_mb = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._done.is_set():
            total = 0
            seen: set[int] = set()
            for pid in self.pids:
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for p in procs:
                    if p.pid in seen:
                        continue
                    seen.add(p.pid)
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += p.memory_info().rss
            self.peak_mb = max(self.peak_mb, total / 2**20)
            time.sleep(self.every_s)

    def stop(self) -> None:
        self._done.set()
        self.join()


class Cluster:
    """The persistent cluster of ``make dev`` (rgb_assets.cluster), on free ports."""

    def __init__(self, folder: Path) -> None:
        from rgb_assets.cluster import start

        self.folder = folder
        self.address = start(folder, port=_free_port(), dashboard_port=_free_port(), n_workers=2)
        self.pids = json.loads((folder / "cluster.json").read_text())["pids"]

    def close(self) -> None:
        from rgb_assets.cluster import stop

        stop(self.folder)


# -- workloads -----------------------------------------------------------------------------
def realistic_source(setup: Setup, root: Path) -> tuple[str, str, dict, dict, Path]:
    """A static collection of the generated scenes; AOI geometries of the two sizes; the
    scenes' folder (outside the collection's: runs must be allowed to read it)."""
    import pystac

    manifest = cb.ensure_workload(setup.workload)
    items = cb.load_items(manifest)
    coll = pystac.Collection(
        id="sentinel-2-l2a",
        description="pipeline benchmark scenes",
        extent=pystac.Extent(
            pystac.SpatialExtent([items[0].bbox]),
            pystac.TemporalExtent([[items[0].datetime, items[-1].datetime]]),
        ),
    )
    for item in items:
        coll.add_item(item.clone())
    coll.normalize_hrefs(str(root / "source"))
    coll.save(pystac.CatalogType.SELF_CONTAINED)
    month = items[0].datetime.strftime("%Y-%m")
    geoms = []
    for px in setup.aoi_px:
        # Half a pixel inside the tile-aligned window: the AOI snaps to exactly px x px pixels.
        gb = cb.aoi_geobox(setup.workload.scene_px, px)
        x0, y0, x1, y1 = gb.extent.boundingbox
        from odc.geo.geom import box

        inner = box(x0 + 5, y0 + 5, x1 - 5, y1 - 5, gb.crs).to_crs("EPSG:4326")
        geoms.append({"type": "Feature", "properties": {}, "geometry": inner.json})
    scenes = Path(next(iter(items[0].assets.values())).get_absolute_href() or "").parent
    return str(root / "source" / "collection.json"), month, geoms[0], geoms[1], scenes


def engine_seconds(setup: Setup, repeats: int = 2) -> float:
    """The engine alone on the realistic AOI, on local threads (best of ``repeats``), with
    the options the pipeline's runs use (the default ``monthly_composite`` config: cloud
    clean-up and haze test included), so the ratio compares like with like."""
    import dask

    from rgb_assets.assets.monthly_composite import CompositeConfig, composite_options
    from rgb_assets.core.domain.collection_specs import SENTINEL2_L2A, resolve_item
    from rgb_assets.core.raster.compositing import median_composite

    manifest = cb.ensure_workload(setup.workload)
    items = [resolve_item(it, SENTINEL2_L2A) for it in cb.load_items(manifest)]
    geobox = cb.aoi_geobox(setup.workload.scene_px, setup.aoi_px[0])
    options = composite_options(CompositeConfig(), SENTINEL2_L2A)
    best = float("inf")
    with dask.config.set(scheduler="threads", num_workers=cb.THREADS):
        for _ in range(repeats):
            t0 = time.perf_counter()
            median_composite(items, geobox, options, aoi_geometry=geobox.extent).compute()
            best = min(best, time.perf_counter() - t0)
    return best


def catalog_update_seconds(partitions: int = 1000, repeats: int = 5) -> float:
    """Replace one partition's item in a derived catalog that already has ``partitions``."""
    import pystac

    from rgb_assets.core.domain.collection_specs import get_collection
    from rgb_assets.core.domain.months import Month
    from rgb_assets.core.stac.catalog import StaticCatalog, derived_collection
    from rgb_assets.core.storage.store import Store

    root = Path(tempfile.mkdtemp(prefix="rgb-catalog-bench-"))
    try:
        cat = StaticCatalog(Store(str(root)), "catalogs/derived", "bench", "bench")
        template = derived_collection(get_collection("sentinel-2-l2a"))

        def item(aoi: str, month: Month) -> pystac.Item:
            return pystac.Item(
                id=f"{aoi}_{month.key}",
                geometry={"type": "Point", "coordinates": [22.0, 45.0]},
                bbox=[22.0, 45.0, 22.1, 45.1],
                datetime=None,
                properties={
                    "start_datetime": f"{month.key}-01T00:00:00Z",
                    "end_datetime": f"{month.key}-28T00:00:00Z",
                },
            )

        # 1,000 partitions: AOIs of 96 months each (2015-2022).
        keys = [
            (f"aoi-{i // 96:03d}", Month(2015 + i % 96 // 12, 1 + i % 12))
            for i in range(partitions)
        ]
        for aoi, month in keys:
            cat.replace_partition(template, aoi, month, [item(aoi, month)])
        times = []
        for aoi, month in keys[:: max(1, partitions // repeats)][:repeats]:
            t0 = time.perf_counter()
            cat.replace_partition(template, aoi, month, [item(aoi, month)])
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def backfill(envs: Env, aoi: str, months: list[str]) -> tuple[float, int]:
    """Launch every month at once, at most QUEUE_LIMIT runs in progress; (seconds, succeeded)."""

    def one(month: str) -> bool:
        proc = envs.launch(aoi, month)
        out, _ = proc.communicate()
        return proc.returncode == 0 and json.loads(out.strip().splitlines()[-1])["success"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(QUEUE_LIMIT) as pool:
        ok = sum(pool.map(one, months))
    return time.perf_counter() - t0, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fail-on", choices=["targets", "correctness"], default="targets")
    parser.add_argument("--run-one", nargs=2, metavar=("AOI", "MONTH"))
    args = parser.parse_args(argv)
    if args.run_one:
        run_one(*args.run_one)
        return 0
    setup = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="rgb-pipeline-bench-"))
    sample_url = str(REPO / "data" / "sample" / "collection.json")
    sample_aoi = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    out: dict[str, Any] = {"workload": setup.name, "machine": platform.platform()}
    problems: list[str] = []
    cluster = None
    try:
        stac_url, month, aoi_small, aoi_large, scenes = realistic_source(setup, work)
        out["catalog_update_s_at_1000"] = round(catalog_update_seconds(), 4)
        out["engine_s"] = round(engine_seconds(setup), 3)

        cluster = Cluster(work / "cluster")
        persistent = Env(work / "persistent", stac_url, cluster.address, read_root=scenes)
        persistent.register("bench-2048", aoi_small)
        persistent.register("bench-4096", aoi_large)
        real = persistent.run("bench-2048", month, watch=cluster.pids)
        if not real["success"]:
            problems.append(f"realistic partition failed: {real.get('failure')}")
        meta = real["meta"]
        out["partition_s"] = round(real["wall_s"], 3)
        out["archive_s"] = meta.get("raw_scenes", {}).get("timings", {}).get("archive_s")
        composite_t = meta.get("monthly_composite", {}).get("timings", {})
        out["write_s"] = composite_t.get("write_s")
        out["composite_timings"] = composite_t
        out["overhead_ratio"] = round(out["partition_s"] / out["engine_s"], 2)
        out["peak_rss_mb_2048"] = round(real["peak_rss_mb"], 1)
        large = persistent.run("bench-4096", month, watch=cluster.pids)
        if not large["success"]:
            problems.append(f"4096^2 partition failed: {large.get('failure')}")
        out["peak_rss_mb_4096"] = round(large["peak_rss_mb"], 1)
        # A run that found nothing to composite is fast and proves nothing: it must publish.
        for name, report in (("realistic", real), ("4096^2", large)):
            made = report["meta"].get("monthly_composite", {}).get("outcome")
            if report["success"] and made != "published":
                problems.append(f"{name} partition: composite {made!r}, not published")
        out["rss_growth_4096_vs_2048"] = round(out["peak_rss_mb_4096"] / out["peak_rss_mb_2048"], 3)

        small_env = Env(work / "small", sample_url, cluster.address)
        small_env.register("bench-small", sample_aoi)
        small_env.run("bench-small", "2019-06")  # first run: imports in the run process
        small = [small_env.run("bench-small", m) for m in ("2019-07", "2019-08")]
        if not all(r["success"] for r in small):
            problems.append("small partition failed")
        out["small_partition_s"] = round(min(r["wall_s"] for r in small), 3)

        months = [SAMPLE_MONTHS[i % len(SAMPLE_MONTHS)] for i in range(setup.backfill)]
        aois = [f"bench-fill-{i // len(SAMPLE_MONTHS)}" for i in range(setup.backfill)]
        for a in sorted(set(aois)):
            small_env.register(a, sample_aoi)
        fill_env = small_env
        seconds, ok = 0.0, 0
        for a in sorted(set(aois)):
            ms = [m for m, x in zip(months, aois, strict=True) if x == a]
            s, k = backfill(fill_env, a, ms)
            seconds, ok = seconds + s, ok + k
        out["backfill_partitions"] = setup.backfill
        out["backfill_succeeded"] = ok
        out["partitions_per_hour"] = round(3600 * setup.backfill / seconds, 1)
        cluster.close()
        cluster = None

        per_run = Env(work / "per-run", sample_url, None)
        seconds2, ok2 = 0.0, 0
        for a in sorted(set(aois)):
            per_run.register(a, sample_aoi)
            ms = [m for m, x in zip(months, aois, strict=True) if x == a]
            s, k = backfill(per_run, a, ms)
            seconds2, ok2 = seconds2 + s, ok2 + k
        out["backfill_succeeded_per_run_cluster"] = ok2
        out["partitions_per_hour_per_run_cluster"] = round(3600 * setup.backfill / seconds2, 1)
        out["backfill_speedup"] = round(
            out["partitions_per_hour"] / out["partitions_per_hour_per_run_cluster"], 2
        )
        if ok != setup.backfill or ok2 != setup.backfill:
            problems.append(f"backfill: {ok} and {ok2} of {setup.backfill} succeeded")
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(work, ignore_errors=True)

    met = {}
    for key, (op, limit) in TARGETS.items():
        value = out.get(key)
        met[key] = value is not None and (value <= limit if op == "<=" else value >= limit)
    out["targets"] = {
        k: {"target": f"{op} {lim}", "met": met[k]} for k, (op, lim) in TARGETS.items()
    }
    out["problems"] = problems
    RESULTS.mkdir(exist_ok=True)
    name = "pipeline_bench_quick.json" if args.quick else "pipeline_bench.json"
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(f"\n{'metric':40s} {'value':>12s}  target")
    for key in (
        "partition_s", "engine_s", "archive_s", "write_s", "overhead_ratio", "small_partition_s",
        "partitions_per_hour", "partitions_per_hour_per_run_cluster", "backfill_speedup",
        "peak_rss_mb_2048", "peak_rss_mb_4096", "rss_growth_4096_vs_2048",
        "catalog_update_s_at_1000",
    ):  # fmt: skip
        target = out["targets"].get(key, {})
        flag = ("met" if target.get("met") else "MISSED") if target else ""
        print(f"{key:40s} {out.get(key)!s:>12s}  {target.get('target', '')} {flag}")
    for p in problems:
        print(f"PROBLEM: {p}")
    if problems:
        return 1
    if args.fail_on == "targets" and not all(met.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
