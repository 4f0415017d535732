"""The offline demo: sample catalog, sample AOI, and the full pipeline for four months of 2019.

Runs every partition through ``execute_job`` on the Dask executor with a persistent
``DAGSTER_HOME``, exactly as the daemon would launch it, then prints where everything is.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

DEMO_MONTHS = ["2019-06", "2019-07", "2019-08", "2019-09"]


def main() -> int:
    root = Path.cwd()
    os.environ.setdefault("DAGSTER_HOME", str(root / ".dagster_home"))
    os.environ.setdefault("RGB_ASSETS_DEPLOYMENT", "demo")
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)

    from dagster import DagsterInstance, execute_job, reconstructable

    from rgb_assets.aois import register_aoi
    from rgb_assets.core.domain.months import Month
    from rgb_assets.core.products.composite import composite_keys
    from rgb_assets.definitions import deployment_resources, monthly_composite_job_def
    from rgb_assets.partitions import partition_key
    from rgb_assets.tools.sample_data import build_sample_catalog

    t0 = time.perf_counter()
    catalog = build_sample_catalog(root / "data" / "sample", cache_dir=root / "data" / "cache")
    print(f"sample catalog: {catalog}")
    resources = deployment_resources("demo")
    storage = resources["storage"]
    feature = json.loads((root / "data" / "sample_aoi.geojson").read_text())
    name = feature["properties"]["name"]
    with DagsterInstance.get() as instance:
        _, change = register_aoi(storage.aois(), instance, name, feature, replace=True)
        print(change.message)
        job = reconstructable(monthly_composite_job_def)
        for m in DEMO_MONTHS:
            month = Month.parse(m)
            key = partition_key(name, month)
            tags = {
                "dagster/partition": str(key),
                "dagster/partition/aoi": name,
                "dagster/partition/month": month.partition_key,
            }
            t = time.perf_counter()
            with execute_job(job, instance=instance, tags=tags) as result:
                status = "SUCCESS" if result.success else "FAILURE"
            print(f"  {key}: {status} in {time.perf_counter() - t:.1f} s (run {result.run_id})")
            if not result.success:
                return 1
    store = storage.store()
    spec_key = resources["stac"].spec().key
    docs = root / "docs" / "demo"
    docs.mkdir(parents=True, exist_ok=True)
    print(f"\nDone in {time.perf_counter() - t0:.0f} s. Outputs under {store.root}:")
    for m in DEMO_MONTHS:
        keys = composite_keys(spec_key, name, Month.parse(m))
        if not store.exists(keys["sidecar"]):
            print(f"  {m}: no data")
            continue
        print(f"  {m}: COG       {store.uri(keys['cog'])}")
        print(f"           Zarr      {store.uri(keys['zarr'])}")
        print(f"           visual    {store.uri(keys['visual'])}")
        print(f"           thumbnail {store.uri(keys['thumbnail'])}")
        shutil.copyfile(store.uri(keys["thumbnail"]), docs / f"{name}_{m}.png")
    print(f"  raw catalog:     {store.uri('catalogs/raw/catalog.json')}")
    print(f"  derived catalog: {store.uri('catalogs/derived/catalog.json')}")
    print(f"  thumbnails copied to {docs}; browse runs with `make dev` (http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
