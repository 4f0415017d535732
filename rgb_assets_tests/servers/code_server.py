"""A real ``rgb-assets code-server`` on 127.0.0.1, and runs launched through it as Dagster's
run launcher launches them (``DagsterInstance.launch_run``: gRPC ``StartRun``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget

from rgb_assets.code_server import wait_ready
from rgb_assets.core.domain.months import Month
from rgb_assets.partitions import partition_key
from rgb_assets_tests.servers.dask_cluster import stop_group

REPO = Path(__file__).resolve().parents[2]
JOB = "monthly_composite_job"


@dataclass
class CodeServer:
    port: int
    process: subprocess.Popen
    log: Path
    workspace: WorkspaceProcessContext

    def launch(self, instance: DagsterInstance, aoi: str, month: str) -> str:
        """Create a run of the partition and launch it now (no queue); its run id."""
        ctx = self.workspace.create_request_context()
        location = ctx.get_code_location("rgb_assets")
        repo = next(iter(location.get_repositories().values()))
        job = repo.get_full_job(JOB)
        plan = location.get_execution_plan(
            job, {}, step_keys_to_execute=None, known_state=None, instance=instance
        ).execution_plan_snapshot
        key = str(partition_key(aoi, Month.parse(month)))
        run = instance.create_run(
            job_name=job.name,
            run_id=None,
            run_config={},
            resolved_op_selection=None,
            step_keys_to_execute=None,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**job.tags, "dagster/partition": key},
            job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repo.asset_graph,
        )
        instance.launch_run(run.run_id, ctx)
        return run.run_id

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def code_server(
    folder: Path, instance: DagsterInstance, env: dict[str, str] | None = None
) -> Iterator[CodeServer]:
    """``rgb-assets code-server`` in its own process group (its fork server and run processes
    too), stopped with everything it started."""
    port = _free_port()
    log = folder / "code-server.log"
    cli = Path(sys.executable).with_name("rgb-assets")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(cli), "code-server", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready("127.0.0.1", port, proc.pid)
        target = GrpcServerTarget(
            host="127.0.0.1", port=port, socket=None, location_name="rgb_assets"
        )
        with WorkspaceProcessContext(instance, target) as workspace:
            yield CodeServer(port, proc, log, workspace)
    finally:
        stop_group(proc)
        with contextlib.suppress(ProcessLookupError):  # the fork server and run processes
            os.killpg(proc.pid, signal.SIGKILL)


def wait_finished(instance: DagsterInstance, run_id: str, timeout_s: float) -> Any:
    """The run once finished (success, failure or canceled); fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} not finished after {timeout_s:.0f} s")
