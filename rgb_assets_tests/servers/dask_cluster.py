"""A real Dask cluster for the tests: ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, the workers started in another folder with a clean environment (no ``RGB_ASSETS_*``
variable, no ``DAGSTER_HOME``), as on a cluster shared by deployments."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT_S = 90.0


@dataclass
class DaskCluster:
    address: str
    dashboard: str
    worker_dir: Path
    #: The ``dask worker`` processes (each the leader of its process group: nanny + worker).
    workers: list[subprocess.Popen] = field(default_factory=list)
    #: Start one more worker process named ``name`` (stopped with the cluster).
    start_worker: Callable[[str], subprocess.Popen] | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM a process group led by ``proc``; SIGKILL it when it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def dask_cluster(
    folder: Path, n_workers: int = 2, env: dict[str, str] | None = None
) -> Iterator[DaskCluster]:
    """Scheduler + ``n_workers`` single-threaded worker processes, stopped on exit. ``env``
    adds variables to the processes' clean environment (e.g. ``TMPDIR``); ``PYTHONPATH`` is
    passed on when set, so workers import the checkout the tests import."""
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    port, dash = _free_port(), _free_port()
    address = f"tcp://127.0.0.1:{port}"
    worker_dir = folder / "elsewhere"
    worker_dir.mkdir(parents=True, exist_ok=True)
    clean_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(worker_dir)}
    if os.environ.get("PYTHONPATH"):
        clean_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    clean_env |= env or {}
    procs: list[subprocess.Popen] = []

    def start_worker(name: str) -> subprocess.Popen:
        with open(folder / f"worker-{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    dask,
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--dashboard-address",
                    "127.0.0.1:0",
                    "--name",
                    name,
                    "--preload",
                    "rgb_assets.cluster",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=worker_dir,
                env=clean_env,
                start_new_session=True,
            )
        procs.append(proc)
        cluster.workers.append(proc)
        return proc

    cluster = DaskCluster(
        address, f"http://127.0.0.1:{dash}/status", worker_dir, start_worker=start_worker
    )
    try:
        with open(folder / "scheduler.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [
                        dask,
                        "scheduler",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--dashboard-address",
                        f"127.0.0.1:{dash}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=worker_dir,
                    env=clean_env,
                    start_new_session=True,
                )
            )
        for i in range(n_workers):
            start_worker(f"w{i}")
        with Client(address, timeout=STARTUP_TIMEOUT_S) as client:
            client.wait_for_workers(n_workers, timeout=STARTUP_TIMEOUT_S)
        yield cluster
    finally:
        for proc in reversed(procs):
            stop_group(proc)
