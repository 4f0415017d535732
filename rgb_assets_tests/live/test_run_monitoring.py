"""A run whose process is killed (``kill -9``, as the OOM killer does) is marked failed within
a bound, so the partition can run again (issue 13 #5). The code server that started the run
worker sees it die and fails the run at once; the daemon's run monitoring (``dagster.dev.yaml``,
30 s polls) is the backstop when that server dies with it. The bound allows for either.

A real ``dagster dev`` (webserver + daemon, the session's ``live_dagster``) launches the run
through GraphQL; the test kills the run worker process (found by the run id in its command
log) and its children (the run's Dask workers), then waits for the daemon's verdict.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import pytest
from dagster_graphql import DagsterGraphQLClient

from rgb_assets.core.domain.months import Month
from rgb_assets_tests.live.conftest import LiveDagster
from rgb_assets_tests.live.test_live_dagster import (
    _client,
    _gql,
    _register_sample_aoi,
    submit_partition,
)

pytestmark = pytest.mark.live

#: dagster.dev.yaml polls every 30 s: a dead run worker is noticed within two polls.
FAILED_WITHIN_S = 120
STARTED_WITHIN_S = 120


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    out: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            out[int(entry.name)] = (ppid, cmd)
    return out


def _messages(server: LiveDagster, run_id: str) -> list[str]:
    data = _gql(
        server,
        """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection {
             events { __typename ... on MessageEvent { message } } } } }""",
        {"id": run_id},
    )
    return [e.get("message") or "" for e in data["logsForRun"].get("events", [])]


def _run_worker(server: LiveDagster, run_id: str) -> int | None:
    """The pid of the process executing the run, from the run's own log ("Started process
    for run (pid: N)"): the code server starts it with multiprocessing, so its command line
    does not name the run."""
    for message in _messages(server, run_id):
        m = re.search(r"Started process for run \(pid: (\d+)\)", message)
        if m:
            return int(m.group(1))
    return None


def _descendants(pid: int) -> list[int]:
    procs = _processes()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in procs.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _status(client: DagsterGraphQLClient, run_id: str) -> str:
    return client.get_run_status(run_id).value


@pytest.mark.filterwarnings("ignore:Non-compliant tag keys:DeprecationWarning")
def test_killed_run_is_marked_failed_within_a_bound(live_dagster: LiveDagster) -> None:
    aoi = _register_sample_aoi(live_dagster)
    month = Month.parse("2019-08")
    client = _client(live_dagster)
    run_id = submit_partition(client, aoi.name, month)
    deadline = time.monotonic() + STARTED_WITHIN_S
    worker = None
    while time.monotonic() < deadline:
        worker = _run_worker(live_dagster, run_id)
        if worker is not None and _status(client, run_id) == "STARTED":
            break
        assert _status(client, run_id) in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")
        time.sleep(0.5)
    assert worker is not None, f"no run worker for {run_id}:\n{live_dagster.tail()}"

    # kill -9 of the run worker and its children (its Dask workers), as an OOM kill would.
    for pid in [worker, *_descendants(worker)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert _status(client, run_id) == "STARTED"  # nothing but the daemon can tell it died

    status = "STARTED"
    while time.monotonic() - killed_at < FAILED_WITHIN_S:
        status = _status(client, run_id)
        if status != "STARTED":
            break
        time.sleep(1)
    elapsed = time.monotonic() - killed_at
    assert status == "FAILURE", f"run {run_id} {status} {elapsed:.0f} s after the kill"
    print(f"run {run_id} marked FAILURE {elapsed:.0f} s after kill -9:")
    messages = _messages(live_dagster, run_id)
    print("\n".join(messages[-3:]))
    assert any("SIGKILL" in m or "run worker" in m.lower() for m in messages), messages[-5:]
    assert worker not in _processes()
