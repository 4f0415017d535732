"""What the fault tests check in a store after a killed or failed run, and how they run one.

- :func:`register`, :func:`derived_items`, :func:`assert_consistent`: the AOI, the derived
  catalog's items, and the published product being one complete version that its catalog item
  describes (every file matches the sidecar's checksum);
- :func:`leftovers`: what a killed run may leave in the store (``*.tmp-*``, ``*.old-*``,
  version folders nobody publishes);
- :func:`publish_first`: a first publication of a partition, in the test process;
- :func:`start_run`: a run of a partition in its own process group (``run_partition``, as
  Dagster's run worker runs it), for a test to kill or let fail; :func:`rerun_to_success`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pystac
import rasterio
import xarray as xr
from dagster import DagsterInstance, materialize

from rgb_assets.aois import register_aoi
from rgb_assets.assets import ALL_ASSETS
from rgb_assets.config import Settings
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import product_versions, read_product
from rgb_assets.core.stac.catalog import CompositeFiles
from rgb_assets.core.storage import checksums
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import _TEMP_RE
from rgb_assets.definitions import pipeline_resources
from rgb_assets.partitions import partition_key
from rgb_assets.resources import StorageResource

REPO = Path(__file__).resolve().parents[1]
COLLECTION = "sentinel-2-l2a"
#: One run of a partition takes about 30 s on 2 idle cores (most of it starting processes).
RUN_TIMEOUT_S = 240


def register(storage: StorageResource, name: str) -> None:
    """The sample AOI under ``name``: stored geometry and a dynamic partition."""
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    with DagsterInstance.get() as instance:
        register_aoi(storage.aois(), instance, name, feature)


def derived_items(storage: StorageResource, aoi: str) -> list[pystac.Item]:
    root = storage.store().local_path("catalogs/derived/catalog.json")
    catalog = pystac.Catalog.from_file(str(root))
    return [i for i in catalog.get_items(recursive=True) if i.properties["rgb_assets:aoi"] == aoi]


def assert_consistent(
    storage: StorageResource, aoi: str, month: Month, *, catalog: bool = False
) -> CompositeFiles:
    """The published set is one complete version: every file matches the sidecar's checksum.

    With ``catalog``, the partition also has exactly one derived item, whose assets are the
    sidecar's files (same version, existing, same checksums). Returns the published files.
    """
    store = storage.store()
    published = read_product(store, PartitionPaths(COLLECTION, aoi, month))
    assert published is not None, f"{aoi} {month.key}: nothing published"
    _, files = published
    for key, expected in files.checksums.items():
        assert checksums.to_multihash(store.sha256(key)) == expected, key
    assert store.exists(files.zarr + "/.zmetadata")
    if catalog:
        items = [
            i for i in derived_items(storage, aoi) if i.properties["rgb_assets:month"] == month.key
        ]
        assert len(items) == 1, [i.id for i in items]
        roles = {"data": files.cog, "visual": files.visual, "thumbnail": files.thumbnail}
        for role, key in (roles | {"zarr": files.zarr}).items():
            href = Path(items[0].assets[role].get_absolute_href() or "")
            assert href == store.local_path(key), (role, href, key)
            assert f"/{files.version}/" in str(href), (role, href, files.version)
            assert href.exists(), href
        for role, key in roles.items():
            assert items[0].assets[role].extra_fields["file:checksum"] == files.checksums[key]
    return files


def leftovers(storage: StorageResource, aoi: str, month: Month) -> list[str]:
    """Temporary and replaced files anywhere in the store, and the partition's version
    folders other than the published one."""
    store = storage.store()
    root = Path(store.root)
    found = [str(p.relative_to(root)) for p in root.rglob("*") if _TEMP_RE.search(p.name)]
    paths = PartitionPaths(COLLECTION, aoi, month)
    published = read_product(store, paths)
    keep = {published[1].version} if published else set()
    found += [f"{paths.composite}/{v}" for v in product_versions(store, paths) if v not in keep]
    return sorted(found)


def product_arrays(storage: StorageResource, files: CompositeFiles) -> dict[str, np.ndarray]:
    """The pixels of a published product: analysis and visual COG bands, Zarr variables."""
    store = storage.store()
    out: dict[str, np.ndarray] = {}
    for name, key in (("cog", files.cog), ("visual", files.visual)):
        with rasterio.open(store.local_path(key)) as src:
            out[name] = src.read()
    with xr.open_zarr(store.local_path(files.zarr), consolidated=True) as ds:
        for var in ds.data_vars:
            out[f"zarr/{var}"] = ds[var].values
    return out


def assert_same_pixels(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def publish_first(
    aoi: str, month: Month, store_root: Path
) -> tuple[StorageResource, CompositeFiles, dict[str, np.ndarray]]:
    """The sample AOI registered as ``aoi`` with a store at ``store_root``, and the partition's
    five assets materialized in this process (a first publication, checked consistent).
    Returns the storage, the published files and their pixels."""
    settings = Settings.from_env().replace(storage_root=str(store_root))
    resources = pipeline_resources(settings)
    storage = resources["storage"]
    assert isinstance(storage, StorageResource)
    register(storage, aoi)
    with DagsterInstance.get() as instance:
        result = materialize(
            ALL_ASSETS,
            partition_key=partition_key(aoi, month),
            resources=resources,
            instance=instance,
        )
    assert result.success
    files = assert_consistent(storage, aoi, month, catalog=True)
    return storage, files, product_arrays(storage, files)


def run_env(storage_root: Path, **extra: str) -> dict[str, str]:
    """The test session's environment with its own store (and, e.g., ``TMPDIR``)."""
    return dict(os.environ, RGB_ASSETS_STORAGE_ROOT=str(storage_root), **extra)


def start_run(aoi: str, month: Month, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """``run_partition`` in a new session: its pid is the group of every process it starts
    (a per-run ``LocalCluster``'s workers included). Its log goes to ``log``, its report to
    ``log`` + ``.json``."""
    with log.open("w") as err, log.with_suffix(".json").open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rgb_assets_tests.run_partition", aoi, month.key],
            stdout=out,
            stderr=err,
            text=True,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL every process of the run's group (the run and its local workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def finish_run(proc: subprocess.Popen[str], log: Path, timeout: float) -> dict:
    """Wait for a run started by :func:`start_run`; its ``{"run_id", "success"}`` report.
    A run still going after ``timeout`` is killed and fails the test."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise AssertionError(
            f"run still going after {timeout:.0f} s:\n{log.read_text()[-3000:]}"
        ) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers the run left behind
    assert proc.returncode == 0, log.read_text()[-3000:]
    return json.loads(log.with_suffix(".json").read_text().strip().splitlines()[-1])


def wait_for_new_version(
    folder: Path, published: str, proc: subprocess.Popen[str], timeout: float
) -> list[str]:
    """Poll the partition's folder until a new version folder is being written; return what
    it holds once a temporary file shows up in it or its Zarr store has been renamed in."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before writing a version"
        versions = [
            p
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name != published
        ]
        if versions:
            with contextlib.suppress(FileNotFoundError):
                seen = sorted(p.name for p in versions[0].iterdir())
            if any(".tmp-" in n for n in seen) or any(n.endswith(".zarr") for n in seen):
                return seen
        time.sleep(0.001)
    raise AssertionError(f"no new version written within {timeout:.0f} s")


def staging_left(tmpdir: Path) -> list[str]:
    """Staging folders of the pipeline's steps in a run's ``TMPDIR``."""
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith("rgb-"))


def rerun_to_success(
    storage: StorageResource,
    aoi: str,
    month: Month,
    env: dict[str, str],
    log: Path,
    timeout: float = RUN_TIMEOUT_S,
) -> CompositeFiles:
    """Run the partition again in a subprocess; it must succeed and publish consistently."""
    report = finish_run(start_run(aoi, month, env, log), log, timeout)
    assert report["success"], log.read_text()[-3000:]
    return assert_consistent(storage, aoi, month, catalog=True)
