"""The code location: assets, checks, jobs, sensors, schedule, resources and the Dask executor.

Settings come from ``rgb_assets.config`` (the environment, read once); they become resource
configuration here, and the executor ships the same configuration to every Dask worker with
each step, so a step never depends on the worker's own environment.
"""

from __future__ import annotations

from dagster import Definitions, ExecutorDefinition

from rgb_assets.assets import ALL_ASSETS
from rgb_assets.config import Settings, get_settings
from rgb_assets.executor import executor_for
from rgb_assets.jobs import monthly_composite_job
from rgb_assets.resources import (
    CatalogsResource,
    LimitsResource,
    StacSourceResource,
    StorageResource,
)
from rgb_assets.schedules import monthly_schedule
from rgb_assets.sensors import ALL_SENSORS


def pipeline_resources(settings: Settings) -> dict[str, object]:
    """The resources of the four assets, sensors and schedule, all from one ``Settings``."""
    return {
        "stac": StacSourceResource(
            url=settings.stac_url,
            collection=settings.collection,
            timeout_s=settings.stac_timeout_s,
            allowed_roots=list(settings.allowed_roots),
        ),
        "storage": StorageResource(
            root=settings.storage_root,
            endpoint_url=settings.s3_endpoint_url,
            public_url=settings.public_url,
        ),
        "catalogs": CatalogsResource(publish_url=settings.publish_url),
        "limits": LimitsResource.of(settings.limits),
    }


def pipeline_executor(settings: Settings) -> ExecutorDefinition:
    """Dask (an existing scheduler when configured, else a cluster per run) or Ray."""
    return executor_for(settings)


def build_definitions(settings: Settings) -> Definitions:
    return Definitions(
        assets=ALL_ASSETS,
        jobs=[monthly_composite_job],
        sensors=ALL_SENSORS,
        schedules=[monthly_schedule],
        resources=pipeline_resources(settings),
        executor=pipeline_executor(settings),
    )


defs = build_definitions(get_settings())


def monthly_composite_job_def():  # type: ignore[no-untyped-def]
    """Module-level accessor so ``reconstructable`` can rebuild the job in worker processes."""
    return defs.resolve_job_def("monthly_composite_job")
