"""The managed Dask executor: user cluster settings are kept, and the run's local cluster (its
scheduler and worker processes) is gone when the run ends.

A tiny two-op job runs through ``execute_job`` on the session's real DAGSTER_HOME, so steps
execute in the cluster's worker processes, exactly as the code location's jobs do.
"""

import ipaddress
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import psutil
from dagster import DagsterInstance, OpExecutionContext, execute_job, job, op, reconstructable

from rgb_assets.cluster import WORKER_MALLOC
from rgb_assets.executor import dask_executor, local_cluster_kwargs
from rgb_assets_tests.test_cluster import start_environ


@op
def where_am_i(context: OpExecutionContext) -> int:
    """Report the worker process and cluster this step ran on."""
    from distributed import get_worker

    worker = get_worker()
    context.add_output_metadata(
        {
            "pid": os.getpid(),
            "scheduler": worker.scheduler.address,
            "nthreads": worker.state.nthreads,
            "profiling": "profile" in worker.periodic_callbacks,
            # The malloc settings in the worker's environment when it started.
            "malloc": {
                k: v
                for k, v in start_environ(Path("/proc/self/environ").read_bytes()).items()
                if k.startswith("MALLOC_")
            },
        }
    )
    return os.getpid()


@op
def downstream(context: OpExecutionContext, pid: int) -> None:
    context.add_output_metadata({"pid": os.getpid(), "upstream_pid": pid})


@job(executor_def=dask_executor)
def tiny_job() -> None:
    downstream(where_am_i())


def _children() -> dict[int, str]:
    """Live child processes of this test process (zombies count as gone)."""
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out[p.pid] = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            pass
    return out


def _step_metadata(instance: DagsterInstance, run_id: str, step: str) -> dict:
    for r in instance.get_records_for_run(run_id).records:
        ev = r.event_log_entry.dagster_event
        if ev and ev.step_key == step and ev.event_type_value == "STEP_OUTPUT":
            md = ev.step_output_data.metadata
            return {k: getattr(v, "value", v) for k, v in md.items()}
    raise AssertionError(f"no output of {step} in run {run_id}")


def _port_open(address: str) -> bool:
    u = urlparse(address)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((u.hostname, u.port)) == 0


def test_user_cluster_settings_are_kept_and_defaults_fill_the_rest():
    from dask.system import CPU_COUNT

    local = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
    assert local_cluster_kwargs({"threads_per_worker": 4, "n_workers": 2}) == {
        "threads_per_worker": 4,
        "n_workers": 2,
        **local,
    }
    assert local_cluster_kwargs({}) == {"n_workers": CPU_COUNT, "threads_per_worker": 1, **local}
    # Listening on every interface stays possible, when asked for.
    assert local_cluster_kwargs({"dashboard_address": ":8787"})["dashboard_address"] == ":8787"


def _loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or 127.0.0.1 as an IPv4-mapped IPv6 address (a dual-stack socket)."""
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def test_local_cluster_listens_on_loopback_only():
    """Issue 13 #8: the per-run Dask dashboard bound 0.0.0.0."""
    from distributed import LocalCluster

    me = psutil.Process()
    # Servers of session fixtures (a live `dagster dev`, its code server) are not this test's.
    before = {p.pid for p in me.children(recursive=True)}
    before_sockets = {(c.laddr.ip, c.laddr.port) for c in me.net_connections("inet")}
    with LocalCluster(**local_cluster_kwargs({"n_workers": 1})) as cluster:
        assert urlparse(cluster.dashboard_link).hostname == "127.0.0.1"
        assert urlparse(cluster.scheduler_address).hostname == "127.0.0.1"
        workers = list(cluster.scheduler_info["workers"])
        assert workers and all(urlparse(w).hostname == "127.0.0.1" for w in workers)
        new = [p for p in me.children(recursive=True) if p.pid not in before]
        listening = {
            c.laddr.ip
            for p in (me, *new)
            for c in p.net_connections("inet")
            if c.status == "LISTEN" and (c.laddr.ip, c.laddr.port) not in before_sockets
        }
        assert listening and all(_loopback(ip) for ip in listening), listening


def test_local_cluster_shuts_down_at_the_end_of_the_run():
    before = _children()
    run_config = {
        "execution": {"config": {"cluster": {"local": {"n_workers": 2, "threads_per_worker": 2}}}}
    }
    with (
        DagsterInstance.get() as instance,
        execute_job(reconstructable(tiny_job), instance=instance, run_config=run_config) as result,
    ):
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        first = _step_metadata(instance, result.run_id, "where_am_i")
        second = _step_metadata(instance, result.run_id, "downstream")
    # The steps ran in worker processes of this run's cluster, with the user's thread count.
    assert first["pid"] != os.getpid() and second["pid"] != os.getpid()
    assert first["nthreads"] == 2
    # No statistical profiler on the run's workers (CPython 3.11 deadlock: rgb_assets.cluster).
    assert first["profiling"] is False
    # glibc's malloc settings of rgb_assets.cluster.WORKER_MALLOC, set before the worker started.
    assert {k: first["malloc"].get(k) for k in WORKER_MALLOC} == WORKER_MALLOC, first["malloc"]
    worker_pids = {first["pid"], second["pid"]}
    # Everything the cluster started is gone (allow the nannies a moment to reap).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # multiprocessing's resource tracker lives as long as this process, by design.
        leftover = {
            pid: cmd
            for pid, cmd in _children().items()
            if pid not in before and "resource_tracker" not in cmd
        }
        alive = [pid for pid in worker_pids if psutil.pid_exists(pid)]
        alive = [pid for pid in alive if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if not leftover and not alive:
            break
        time.sleep(0.2)
    assert not leftover, f"processes left behind by the run: {leftover}"
    assert not alive, f"worker processes still running: {alive}"
    assert not _port_open(first["scheduler"]), "the run's scheduler still accepts connections"
