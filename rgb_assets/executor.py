"""The Dask executor, with a local cluster that is shut down when the run ends.

dagster-dask's executor creates a ``LocalCluster`` per run and only closes its ``Client``:
the cluster's scheduler and worker processes are left to die with the run process, which
logs "Restarting worker" and leaked-semaphore warnings and can leave workers behind. Here the
local cluster is a context manager around the run, sized to the machine by default (one
single-threaded worker per core, as dagster-dask does, but the user's ``n_workers`` and
``threads_per_worker`` are kept), and closed cleanly afterwards. An ``existing`` scheduler
address is used as is and never shut down.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dagster import Field, Permissive, Selector, StringSource, executor
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster_dask.executor import DaskExecutor
from dask.system import CPU_COUNT


def local_cluster_kwargs(user: dict[str, Any] | None) -> dict[str, Any]:
    """LocalCluster arguments: the user's as given, defaults only for what they left out.

    dagster-dask's ``build_dict`` overwrites ``threads_per_worker`` with 1 whatever the user
    set; here 1 thread per worker and one worker per CPU are defaults. ``CPU_COUNT`` honours
    cgroup quotas and CPU affinity, unlike ``os.cpu_count()``.
    """
    config = dict(user or {})
    config.setdefault("n_workers", CPU_COUNT)
    config.setdefault("threads_per_worker", 1)
    # Scheduler, workers and dashboard listen on this machine only unless configured otherwise
    # (the dashboard defaulted to ":8787", every interface).
    config.setdefault("host", "127.0.0.1")
    config.setdefault("dashboard_address", "127.0.0.1:0")
    return config


class ManagedDaskExecutor(DaskExecutor):
    """dagster-dask's executor; the local cluster lives exactly as long as the run."""

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        if self.cluster_type != "local":
            yield from super().execute(plan_context, execution_plan)
            return
        from distributed import LocalCluster

        config = local_cluster_kwargs(self.cluster_configuration)
        with LocalCluster(**config) as cluster:
            inner = DaskExecutor("existing", {"address": cluster.scheduler_address})
            yield from inner.execute(plan_context, execution_plan)


@executor(
    name="dask",
    requirements=multiple_process_executor_requirements(),
    config_schema={
        "cluster": Field(
            Selector(
                {
                    "existing": Field(
                        {"address": StringSource}, description="Connect to an existing scheduler."
                    ),
                    "local": Field(
                        Permissive(),
                        is_required=False,
                        description="distributed.LocalCluster arguments (n_workers, ...).",
                    ),
                }
            ),
            default_value={"local": {}},
        )
    },
)
def dask_executor(init_context) -> ManagedDaskExecutor:  # type: ignore[no-untyped-def]
    """Dask executor: a local cluster sized to the machine, or an existing scheduler."""
    ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
    return ManagedDaskExecutor(cluster_type, cluster_configuration)
