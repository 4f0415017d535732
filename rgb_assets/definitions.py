"""The code location: assets, checks, jobs, resources per deployment, and the Dask executor.

Deployments (``RGB_ASSETS_DEPLOYMENT``):
- ``local`` (default): Earth Search, files under ``./data/store``.
- ``demo``: the embedded offline sample catalog under ``./data/sample``.
Each setting can be overridden: ``RGB_ASSETS_STAC_URL``, ``RGB_ASSETS_COLLECTION``,
``RGB_ASSETS_STORAGE_ROOT``, ``RGB_ASSETS_DASK_SCHEDULER`` (an existing scheduler address),
``RGB_ASSETS_PUBLISH_URL`` (a Transactions-enabled STAC API the catalogs are also published to).
"""

from __future__ import annotations

import os

from dagster import Definitions

from rgb_assets.assets import ALL_ASSETS
from rgb_assets.core.domain.collection_specs import EARTH_SEARCH_URL
from rgb_assets.executor import dask_executor
from rgb_assets.jobs import monthly_composite_job
from rgb_assets.resources import (
    CatalogIOManager,
    CompositeIOManager,
    RawScenesIOManager,
    StacSourceResource,
    StorageResource,
)
from rgb_assets.schedules import monthly_schedule
from rgb_assets.sensors import ALL_SENSORS

SAMPLE_CATALOG = "data/sample/collection.json"
DEFAULT_URLS = {"local": EARTH_SEARCH_URL, "demo": SAMPLE_CATALOG}


def deployment_resources(deployment: str | None = None) -> dict[str, object]:
    deployment = deployment or os.getenv("RGB_ASSETS_DEPLOYMENT", "local")
    if deployment not in DEFAULT_URLS:
        raise ValueError(
            f"RGB_ASSETS_DEPLOYMENT: {deployment!r} is not one of {', '.join(DEFAULT_URLS)}"
        )
    url = os.getenv("RGB_ASSETS_STAC_URL", DEFAULT_URLS[deployment])
    if not url.startswith(("http://", "https://")) and "://" not in url:
        url = os.path.abspath(url)
    stac = StacSourceResource(
        url=url, collection=os.getenv("RGB_ASSETS_COLLECTION", "sentinel-2-l2a")
    )
    root = os.getenv("RGB_ASSETS_STORAGE_ROOT", "data/store")
    storage = StorageResource(root=root if "://" in root else os.path.abspath(root))
    return pipeline_resources(stac, storage, os.getenv("RGB_ASSETS_PUBLISH_URL") or None)


def pipeline_resources(
    stac: StacSourceResource, storage: StorageResource, publish_url: str | None = None
) -> dict[str, object]:
    """The resources and IO managers of the four assets, all on one source and one store."""
    return {
        "stac": stac,
        "storage": storage,
        "raw_scenes_io_manager": RawScenesIOManager(storage=storage, stac=stac),
        "composite_io_manager": CompositeIOManager(storage=storage, stac=stac),
        "catalog_io_manager": CatalogIOManager(storage=storage, publish_url=publish_url),
    }


def _executor():  # type: ignore[no-untyped-def]
    address = os.getenv("RGB_ASSETS_DASK_SCHEDULER")
    if address:
        return dask_executor.configured({"cluster": {"existing": {"address": address}}})
    return dask_executor


defs = Definitions(
    assets=ALL_ASSETS,
    jobs=[monthly_composite_job],
    sensors=ALL_SENSORS,
    schedules=[monthly_schedule],
    resources=deployment_resources(),
    executor=_executor(),
)


def monthly_composite_job_def():  # type: ignore[no-untyped-def]
    """Module-level accessor so ``reconstructable`` can rebuild the job in worker processes."""
    return defs.resolve_job_def("monthly_composite_job")
