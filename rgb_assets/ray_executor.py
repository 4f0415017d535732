"""Ray, the second engine: dagster-ray's ``ray_executor`` and Dask-on-Ray inside steps.

``RGB_ASSETS_EXECUTOR=ray`` makes dagster-ray's executor run every step as a Ray job on the
cluster at ``RAY_ADDRESS`` (its dashboard / job API, ``http://127.0.0.1:8265``). A Ray job is a
new process that loads the code location itself, so the run's ``RGB_ASSETS_*`` settings are
forwarded to it as the job's environment (dagster-ray's ``env_vars``), and the step finds the
run's store and source whatever the Ray node's own environment. Inside the step, the composite's
Dask graph runs on the same Ray cluster through Ray's Dask scheduler (``ray_dask_get``), so the
engine's tiles spread over every Ray worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from dagster import ExecutorDefinition

from rgb_assets.config import Settings


def forwarded_variables(settings: Settings) -> list[str]:
    """``KEY=VALUE`` of the settings a step needs, for the Ray jobs' environment.

    The resolved values are sent (absolute store path and STAC URL), so a relative
    ``data/store`` means the same folder in the job as here. ``RAY_ADDRESS`` is not: Ray's job
    supervisor gives each job its own.
    """
    env = {
        "RGB_ASSETS_DEPLOYMENT": settings.deployment,
        "RGB_ASSETS_STAC_URL": settings.stac_url,
        "RGB_ASSETS_COLLECTION": settings.collection,
        "RGB_ASSETS_STORAGE_ROOT": settings.storage_root,
        "RGB_ASSETS_FIRST_MONTH": settings.first_month,
        "RGB_ASSETS_EXECUTOR": "ray",
        "AWS_ENDPOINT_URL_S3": settings.s3_endpoint_url,
        "RGB_ASSETS_PUBLISH_URL": settings.publish_url,
        "DAGSTER_HOME": settings.dagster_home,
    }
    return [f"{k}={v}" for k, v in env.items() if v]


def ray_executor_for(settings: Settings) -> ExecutorDefinition:
    """dagster-ray's executor on ``RAY_ADDRESS`` (unset: Ray's default, a local head)."""
    from dagster_ray import ray_executor

    ray_config: dict[str, Any] = {"env_vars": forwarded_variables(settings)}
    if settings.ray_address:
        ray_config["address"] = settings.ray_address
    return ray_executor.configured({"ray": ray_config})


@contextlib.contextmanager
def ray_dask_scheduler() -> Iterator[str]:
    """Make Ray's Dask scheduler the default for the ``with`` block; yields the dashboard URL.

    Inside a Ray job ``ray.init()`` joins the job's cluster (``RAY_ADDRESS`` set by Ray's job
    supervisor); the connection is left open for the job's other steps.
    """
    import dask
    import ray
    from ray.util.dask import ray_dask_get

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    dashboard = ray.worker.get_dashboard_url() or ""
    with dask.config.set(scheduler=ray_dask_get):
        yield f"http://{dashboard}" if dashboard and "://" not in dashboard else dashboard
