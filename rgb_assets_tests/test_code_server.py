"""The warm code server (``rgb-assets code-server``): runs launched through it as Dagster's run
launcher does (gRPC ``StartRun``) are forked from its fork server, which imported the code
location, and it still watches them: a killed run process fails its run, and the next run of
the partition publishes.

A real ``dask scheduler`` with two workers on 127.0.0.1 runs the steps.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from dagster import DagsterInstance

from rgb_assets.core.domain.months import Month
from rgb_assets_tests.published import assert_consistent, register
from rgb_assets_tests.servers.code_server import CodeServer, code_server, wait_finished
from rgb_assets_tests.servers.dask_cluster import DaskCluster

RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.get() as i:
        yield i


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, cluster: DaskCluster, instance: DagsterInstance
) -> Iterator[CodeServer]:
    env = {"RGB_ASSETS_DASK_SCHEDULER": cluster.address}
    with code_server(tmp_path_factory.mktemp("code-server"), instance, env) as s:
        yield s


class ProcessWatch(threading.Thread):
    """Every process under a root seen while it runs: pid -> (parent pid, command line)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.seen: dict[int, tuple[int, str]] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(psutil.Error):
                for p in psutil.Process(self.root).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self.seen.setdefault(p.pid, (p.ppid(), " ".join(p.cmdline())))
            time.sleep(0.05)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _run_process(instance: DagsterInstance, run_id: str) -> int | None:
    """The run process's pid, from the run's own log ("Started process for run (pid: N)")."""
    for record in instance.all_logs(run_id):
        message = record.dagster_event.message if record.dagster_event else record.user_message
        m = re.search(r"Started process for run \(pid: (\d+)\)", message or "")
        if m:
            return int(m.group(1))
    return None


def test_runs_are_forked_from_the_warm_fork_server(
    server: CodeServer, instance: DagsterInstance, storage
) -> None:
    register(storage, "warm-fork")
    watch = ProcessWatch(server.process.pid)
    watch.start()
    try:
        run_id = server.launch(instance, "warm-fork", "2019-07")
        run = wait_finished(instance, run_id, RUN_TIMEOUT_S)
    finally:
        watch.stop()
    assert run.is_success, f"run {run.status}:\n{server.tail()}"
    pid = _run_process(instance, run_id)
    assert pid in watch.seen, f"run process {pid} never seen under the code server"
    parent, _ = watch.seen[pid]
    assert parent in watch.seen, "the run process is not a child of the fork server"
    forkserver_cmd = watch.seen[parent][1]
    assert "forkserver" in forkserver_cmd and "rgb_assets.definitions" in forkserver_cmd
    # Nothing spawned: no process under the server starts Python afresh for the run.
    assert not [c for _, c in watch.seen.values() if "spawn_main" in c], watch.seen
    assert_consistent(storage, "warm-fork", Month.parse("2019-07"), catalog=True)


def test_a_killed_run_process_fails_its_run_and_the_next_run_publishes(
    server: CodeServer, instance: DagsterInstance, storage
) -> None:
    register(storage, "warm-kill")
    run_id = server.launch(instance, "warm-kill", "2019-08")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    pid = None
    while pid is None and time.monotonic() < deadline:
        pid = _run_process(instance, run_id)
        time.sleep(0.05)
    assert pid is not None, server.tail()
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    killed_at = time.monotonic()
    run = wait_finished(instance, run_id, 120)
    assert run.status.value == "FAILURE", run.status
    print(f"killed run marked {run.status.value} {time.monotonic() - killed_at:.1f} s later")

    again = server.launch(instance, "warm-kill", "2019-08")
    run = wait_finished(instance, again, RUN_TIMEOUT_S)
    assert run.is_success, f"run {run.status}:\n{server.tail()}"
    assert_consistent(storage, "warm-kill", Month.parse("2019-08"), catalog=True)
