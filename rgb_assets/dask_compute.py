"""Run a step's Dask computations on the executor's cluster, and report where they ran."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from dagster import MetadataValue

from rgb_assets.config import get_settings


@dataclass
class ClusterReport:
    """Where a step's tasks ran: the cluster's dashboard and the workers that did work."""

    dashboard: str | None = None
    scheduler: str | None = None
    workers_total: int = 0
    workers_used: set[str] = field(default_factory=set)
    tasks: int = 0


@contextlib.contextmanager
def cluster_compute() -> Iterator[ClusterReport]:
    """Inside a Dask worker (the dask executor), make the cluster the default scheduler.

    ``worker_client`` secedes the step's task from the worker's thread pool, so the step's
    own computation spreads over every worker instead of running on one thread. Under the Ray
    executor (the step is a Ray job, ``RGB_ASSETS_EXECUTOR=ray`` forwarded to it), the graph
    runs on the Ray cluster through Dask-on-Ray. Otherwise (in-process execution), Dask's local
    threaded scheduler is used.
    """
    report = ClusterReport()
    try:
        from distributed import get_task_stream, get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        if get_settings().executor == "ray":
            from rgb_assets.ray_executor import ray_dask_scheduler

            with ray_dask_scheduler() as dashboard:
                report.dashboard = dashboard or None
                yield report
            return
        yield report
        return
    with worker_client() as client:
        report.dashboard = client.dashboard_link
        report.scheduler = client.scheduler.address
        report.workers_total = len(client.scheduler_info().get("workers", {}))
        with get_task_stream(client) as ts:
            yield report
        report.tasks = len(ts.data)
        report.workers_used = {t["worker"] for t in ts.data}


@contextlib.contextmanager
def archive_executor(max_workers: int) -> Iterator[Executor]:
    """Where a step's independent tasks (one per scene to archive) run.

    Inside a Dask worker: the cluster, through ``worker_client`` (the step secedes, so its
    tasks spread over every worker, and only their results come back). Elsewhere (in-process
    execution, the Ray executor): a pool of ``max_workers`` threads in the step's process.
    """
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        with ThreadPoolExecutor(max_workers) as pool:
            yield pool
        return
    with worker_client() as client:
        yield client.get_executor(pure=False)


def step_dashboard() -> str | None:
    """The Dask dashboard of the cluster running this step, or None outside a Dask worker.

    Steps that do no Dask computation of their own still run on a worker under the dask
    executor; recording the link lets a run's metadata lead to its cluster's task stream.
    """
    try:
        from distributed import get_client, get_worker

        get_worker()
    except (ImportError, ValueError):
        return None
    try:
        return get_client().dashboard_link
    except Exception:  # a dashboard link is informative only; never fail a step over it
        return None


def dashboard_metadata(link: str | None) -> MetadataValue | str:
    """Dagster metadata for a dashboard link: a URL, or "in-process" without a cluster."""
    return MetadataValue.url(link) if link else "in-process"
