"""The Dask executor: safe on a shared cluster, with a local cluster that ends with the run.

dagster-dask's ``DaskExecutor`` is subclassed, not copied. What this executor changes:

- **Task keys are unique per run** (``<step key>-<run id>``). dagster-dask names every task
  ``<job>.<step>``, so two runs of a job on one scheduler share keys and the scheduler hands the
  second run the first one's finished result: that run reports success without running a step.
- **A failed step skips its downstream steps and the run fails**, as Dagster's own executors do.
  dagster-dask submits the whole plan at once and a step failure is only an event in a
  successful Dask task, so downstream steps used to run anyway. Steps are submitted here as
  Dagster's ``ActiveExecution`` releases them, and every event is handed back to it (which emits
  ``STEP_SKIPPED`` and fails the run); a Dask task that raises (killed worker, bad plan) becomes
  a step failure.
- **Steps get the run's settings on any worker.** The run process merges
  ``Settings.resource_run_config()`` under the run's own run config (the run's values win), so a
  worker whose environment has no ``RGB_ASSETS_*`` variables still uses the run's store and
  source.
- **A worker opens the Dagster instance once**, not for every step. dagster-dask's
  ``query_on_dask_worker`` builds a new ``DagsterInstance`` per step; on the SQLite instance of
  ``make dev`` each new instance re-reads Alembic's migration scripts to check every database
  shard it touches (29 % of the workers' busy time in a small backfill). ``execute_step_on_worker``
  is the same function with the instance kept per worker process (one per instance config).
- **The local cluster is a context manager around the run** (one single-threaded worker per
  core by default, the user's ``LocalCluster`` arguments kept) and is shut down cleanly; an
  ``existing`` scheduler (``RGB_ASSETS_DASK_SCHEDULER``, the persistent cluster of ``make dev``)
  is never shut down.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, suppress
from typing import Any

import dask
from dagster import (
    DagsterInstance,
    ExecutorDefinition,
    Field,
    Permissive,
    Selector,
    StringSource,
    executor,
)
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import create_execution_plan, execute_plan
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import serialize_value
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements
from dask.system import CPU_COUNT

from rgb_assets.cluster import WORKER_CONFIG, worker_malloc
from rgb_assets.config import Settings, get_settings, merge_run_config

#: How often the run process looks for interrupts while steps run on the cluster.
POLL_S = 0.5


def local_cluster_kwargs(user: dict[str, Any] | None) -> dict[str, Any]:
    """LocalCluster arguments: the user's as given, defaults only for what they left out.

    dagster-dask's ``build_dict`` overwrites ``threads_per_worker`` with 1 whatever the user
    set; here 1 thread per worker and one worker per CPU are defaults. ``CPU_COUNT`` honours
    cgroup quotas and CPU affinity, unlike ``os.cpu_count()``. Dashboards bind loopback.
    """
    config = dict(user or {})
    config.setdefault("n_workers", CPU_COUNT)
    config.setdefault("threads_per_worker", 1)
    config.setdefault("host", "127.0.0.1")
    config.setdefault("dashboard_address", "127.0.0.1:0")
    return config


_instances: dict[str, DagsterInstance] = {}
_instances_lock = threading.Lock()


def worker_instance(ref: InstanceRef) -> DagsterInstance:
    """The Dagster instance of ``ref`` in this process, opened once and kept for its life."""
    key = serialize_value(ref)
    with _instances_lock:
        instance = _instances.get(key)
        if instance is None:
            instance = _instances[key] = DagsterInstance.from_ref(ref)
        return instance


def execute_step_on_worker(
    recon_job: Any,
    dagster_run: Any,
    run_config: Mapping[str, object],
    step_keys: list[str],
    instance_ref: InstanceRef,
    known_state: Any,
) -> list[DagsterEvent]:
    """Execute steps of a run on a Dask worker: dagster-dask's ``query_on_dask_worker`` with
    the worker's kept instance (see the module doc)."""
    job = recon_job.get_subset(op_selection=dagster_run.resolved_op_selection)
    plan = create_execution_plan(
        job, run_config=run_config, step_keys_to_execute=step_keys, known_state=known_state
    )
    return list(
        execute_plan(plan, job, worker_instance(instance_ref), dagster_run, run_config=run_config)
    )


def task_key(run_id: str, step_key: str) -> str:
    """The Dask key of one step of one run: unique on a scheduler shared by many runs."""
    return f"{step_key}-{run_id}"


def _known_fields(resource_def: Any) -> set[str] | None:
    """Names of the fields under a resource's ``config`` (None: accept whatever is given)."""
    schema = getattr(resource_def, "config_schema", None)
    config_type = getattr(schema, "config_type", None)
    fields = getattr(config_type, "fields", None)
    return set(fields) if isinstance(fields, Mapping) else None


def settings_run_config(settings: Settings, resource_defs: Mapping[str, Any]) -> dict[str, Any]:
    """The settings' ``resources`` run config, limited to the resources and fields the job has.

    ``Settings.resource_run_config`` names every resource the code location may define; a job
    (or a code location mid-migration) without one of them, or without one of its fields,
    would fail config validation on the worker, so those entries are left out.
    """
    out: dict[str, Any] = {}
    for key, section in settings.resource_run_config().items():
        if key not in resource_defs:
            continue
        config = dict(section.get("config", {}))
        known = _known_fields(resource_defs[key])
        if known is not None:
            config = {k: v for k, v in config.items() if k in known}
        if config:
            out[key] = {"config": config}
    return {"resources": out} if out else {}


def step_run_config(plan_context: PlanOrchestrationContext) -> dict[str, Any]:
    """The run config every step gets: the run process's settings under the run's own config."""
    resource_defs = plan_context.job.get_definition().resource_defs
    base = settings_run_config(get_settings(), resource_defs)
    return merge_run_config(base, plan_context.run_config or {})


class ManagedDaskExecutor(DaskExecutor):
    """dagster-dask's executor, made safe for many runs on one cluster (see the module doc)."""

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        from distributed import Client, LocalCluster

        if not plan_context.instance.is_persistent:
            raise ValueError("Dask execution requires a persistent DagsterInstance (DAGSTER_HOME)")
        with ExitStack() as stack:
            if self.cluster_type == "local":
                # The nannies pass both to their workers.
                with dask.config.set(WORKER_CONFIG), worker_malloc():
                    cluster = stack.enter_context(
                        LocalCluster(**local_cluster_kwargs(self.cluster_configuration))
                    )
                address = cluster.scheduler_address
            elif self.cluster_type == "existing":
                address = self.cluster_configuration["address"]
            else:
                raise ValueError(f"unsupported cluster type {self.cluster_type!r}")
            client = stack.enter_context(Client(address, set_as_default=False))
            yield DagsterEvent.engine_event(
                plan_context,
                f"Executing steps on the Dask cluster at {client.scheduler.address} "
                f"(dashboard {client.dashboard_link})",
                EngineEventData(metadata={"dask_dashboard": client.dashboard_link}),
            )
            yield from self._execute_on(client, plan_context, execution_plan)

    def _execute_on(
        self, client: Any, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        run = plan_context.dagster_run
        run_config = step_run_config(plan_context)
        recon_job = plan_context.reconstructable_job
        instance_ref = plan_context.instance.get_ref()
        running: dict[str, Any] = {}
        finished: queue.SimpleQueue[str] = queue.SimpleQueue()
        with ActiveExecution(execution_plan, retry_mode=self.retries) as active:
            try:
                while not active.is_complete:
                    if active.check_for_interrupts():
                        active.mark_interrupted()
                        raise DagsterExecutionInterruptedError()
                    for step in active.get_steps_to_execute():
                        future = client.submit(
                            execute_step_on_worker,
                            recon_job,
                            run,
                            run_config,
                            [step.key],
                            instance_ref,
                            active.get_known_state(),
                            key=task_key(run.run_id, step.key),
                            pure=False,
                            resources=get_dask_resource_requirements(step.tags) or None,
                        )
                        running[step.key] = future
                        future.add_done_callback(lambda _, k=step.key: finished.put(k))
                    if running:
                        with suppress(queue.Empty):
                            step_key = finished.get(timeout=POLL_S)
                            future = running.pop(step_key)
                            yield from self._step_events(plan_context, active, step_key, future)
                            active.verify_complete(plan_context, step_key)
                    yield from active.plan_events_iterator(plan_context)
            finally:
                # Interrupted or failed: nothing of this run may keep running on a shared cluster.
                if running:
                    client.cancel(list(running.values()), force=True)

    def _step_events(
        self,
        plan_context: PlanOrchestrationContext,
        active: ActiveExecution,
        step_key: str,
        future: Any,
    ) -> Iterator[DagsterEvent]:
        """A finished step's events, or a step failure when its Dask task raised."""
        try:
            events = future.result()
        except Exception:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            step_context = plan_context.for_step(active.get_step_by_key(step_key))
            yield DagsterEvent.engine_event(
                step_context,
                f"Dask task {future.key} of step {step_key} raised",
                EngineEventData.engine_error(error),
            )
            failure = self.log_failure_or_retry_event_after_error(
                step_context, error, active.get_known_state()
            )
            active.handle_event(failure)
            yield failure
            return
        for event in events:
            yield event
            active.handle_event(event)


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
    """Dask executor: an existing scheduler, or a local cluster sized to the machine."""
    ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
    return ManagedDaskExecutor(cluster_type, cluster_configuration)


def executor_for(settings: Settings) -> ExecutorDefinition:
    """The code location's executor: Ray (``RGB_ASSETS_EXECUTOR=ray``) or Dask, on the
    existing scheduler ``RGB_ASSETS_DASK_SCHEDULER`` when set, else a ``LocalCluster`` per run."""
    if settings.executor == "ray":
        from rgb_assets.ray_executor import ray_executor_for

        return ray_executor_for(settings)
    if settings.dask_scheduler:
        return dask_executor.configured(
            {"cluster": {"existing": {"address": settings.dask_scheduler}}}
        )
    return dask_executor
