"""The offline demo: sample catalog, sample AOI, and the full pipeline for four months of 2019.

Runs every partition through ``execute_job`` on the Dask executor with a persistent
``DAGSTER_HOME``, exactly as the daemon would launch it, then prints where everything is.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from rgb_assets.config import Settings, apply_defaults, demo_environment

DEMO_MONTHS = ["2019-06", "2019-07", "2019-08", "2019-09"]


def main() -> int:
    root = Path.cwd()
    # Set for this process and the Dask workers it starts, before the definitions load.
    apply_defaults(demo_environment(root))
    settings = Settings.from_env()
    assert settings.dagster_home
    Path(settings.dagster_home).mkdir(parents=True, exist_ok=True)

    from dagster import DagsterInstance, execute_job, reconstructable

    from rgb_assets.aois import register_aoi
    from rgb_assets.core.domain.months import Month
    from rgb_assets.core.products.composite import read_product
    from rgb_assets.core.storage import layout
    from rgb_assets.core.storage.layout import PartitionPaths
    from rgb_assets.definitions import monthly_composite_job_def, pipeline_resources
    from rgb_assets.partitions import partition_key
    from rgb_assets.tools.sample_data import build_sample_catalog

    t0 = time.perf_counter()
    catalog = build_sample_catalog(root / "data" / "sample", cache_dir=root / "data" / "cache")
    print(f"sample catalog: {catalog}")
    resources = pipeline_resources(settings)
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
        product = read_product(store, PartitionPaths(spec_key, name, Month.parse(m)))
        if product is None:
            print(f"  {m}: no data")
            continue
        files = product[1]
        print(f"  {m}: COG       {store.uri(files.cog)}")
        print(f"           Zarr      {store.uri(files.zarr)}")
        print(f"           visual    {store.uri(files.visual)}")
        print(f"           thumbnail {store.uri(files.thumbnail)}")
        shutil.copyfile(store.uri(files.thumbnail), docs / f"{name}_{m}.png")
    print(f"  raw catalog:     {store.uri(layout.catalog_root(layout.RAW_CATALOG))}")
    print(f"  derived catalog: {store.uri(layout.catalog_root(layout.DERIVED_CATALOG))}")
    print(f"  thumbnails copied to {docs}; browse runs with `make dev` (http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
