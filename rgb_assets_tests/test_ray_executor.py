"""Ray, the second engine: a partition materialized with dagster-ray's executor on a real local
Ray head (``ray start --head``), every step a Ray job and the composite's Dask graph run by
Ray's Dask scheduler, gives the same composite as the Dask executor.

Ray binds the machine's non-loopback address whatever it is told, so the head, the run and the
checks run inside a network namespace that has only loopback (``unshare -n``, as root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from dagster import DagsterInstance

from rgb_assets.aois import register_aoi
from rgb_assets.assets import ALL_ASSETS
from rgb_assets.config import Settings
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import read_product
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.definitions import pipeline_resources
from rgb_assets_tests.run_partition import run_partition

REPO = Path(__file__).resolve().parents[1]
AOI, MONTH = "ray-equal", "2019-07"


def _product(root: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    storage = pipeline_resources(Settings.from_env({"RGB_ASSETS_STORAGE_ROOT": root}))["storage"]
    store = storage.store()
    published = read_product(store, PartitionPaths("sentinel-2-l2a", AOI, Month.parse(MONTH)))
    assert published is not None, f"nothing published under {root}"
    _, files = published
    with rasterio.open(store.local_path(files.cog)) as src:
        cog = src.read()
    ds = xr.open_zarr(store.local_path(files.zarr), consolidated=True).load()
    return cog, {k: ds[k].values for k in ds.data_vars}


def test_ray_executor_equals_dask(sample_dir: Path, session_dir: Path) -> None:
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    dask_root = os.environ["RGB_ASSETS_STORAGE_ROOT"]
    ray_root = str(session_dir / "ray-store")
    with DagsterInstance.get() as instance:
        for root in (dask_root, ray_root):
            settings = Settings.from_env({"RGB_ASSETS_STORAGE_ROOT": root})
            register_aoi(pipeline_resources(settings)["storage"].aois(), instance, AOI, feature)
    dask_run = run_partition(AOI, MONTH)  # the Dask executor, a LocalCluster for the run
    assert dask_run["success"]

    env = dict(os.environ, RGB_ASSETS_STORAGE_ROOT=ray_root)
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c",
         f"ip link set lo up; exec {sys.executable} -m rgb_assets_tests.ray_partition "
         f"{AOI} {MONTH}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["success"], proc.stderr[-4000:]
    # Every step ran as a Ray job, and the composite's tiles as Ray tasks (Dask-on-Ray).
    assert report["step_jobs"] == len(ALL_ASSETS), report  # one Ray job per step
    assert report["tasks"] > 0, report

    dask_cog, dask_zarr = _product(dask_root)
    ray_cog, ray_zarr = _product(ray_root)
    assert np.array_equal(dask_cog, ray_cog, equal_nan=True)
    assert dask_zarr.keys() == ray_zarr.keys()
    for name in dask_zarr:
        assert np.array_equal(dask_zarr[name], ray_zarr[name], equal_nan=True), name
