"""The persistent Dask cluster of ``make dev`` and ``make demo``, and its worker preload.

One scheduler (dashboard included) and worker processes on 127.0.0.1, started once and used by
every run through ``RGB_ASSETS_DASK_SCHEDULER``, so runs pay neither a cluster start nor cold
imports: each worker preloads this module, whose ``dask_setup`` imports the code location.

    python -m rgb_assets.cluster up      # idempotent; prints the scheduler address
    python -m rgb_assets.cluster down    # stops only the processes ``up`` started (pid files)
    python -m rgb_assets.cluster status

Processes, pid files and logs live in ``.dask_cluster/`` of the current folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rgb_assets.config import child_environment, environment

#: Dask settings of the workers this project starts (this cluster, a run's ``LocalCluster``).
#: Dask's statistical profiler calls ``sys._current_frames()`` every 10 ms on every worker; on
#: Python 3.11 a garbage collection run inside that call can deadlock a thread being started in
#: a step (CPython gh-106883, fixed in 3.12): a backfill run hung in 1 of 50 here. The
#: dashboard's task stream and progress stay; its "Profile" page is empty.
WORKER_CONFIG: dict[str, Any] = {"distributed.worker.profile.enabled": False}

#: glibc's malloc on the same workers (see ``worker_malloc``). Dask's nanny sets
#: ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory goes back to the system at once, which
#: also freezes glibc's mmap threshold at 128 KiB: every array above it (each plane of the
#: engine's strips) is mapped afresh and page-faulted in. On 2 workers, a 2048^2 composite of 12
#: scenes took 3.4-3.7 s instead of 2.4-2.9 s, its statistics 0.55 s instead of 0.40 s, its
#: products 1.8 s instead of 1.45 s. Arrays of 16 MiB or more (the tiles' time stacks) are still
#: mapped and returned when freed; smaller ones reuse the heap, which keeps at most 64 MiB free
#: at its top. Peak memory stays flat across AOI sizes (``benchmarks/pipeline_bench.py``).
WORKER_MALLOC: dict[str, str] = {
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
    "MALLOC_MMAP_THRESHOLD_": str(16 << 20),
}

DEFAULT_PORT = 8786
DEFAULT_DASHBOARD = 8787
STATE_DIR = Path(".dask_cluster")


@contextlib.contextmanager
def worker_malloc() -> Iterator[None]:
    """``WORKER_MALLOC`` in this process's environment while nannies are created in it.

    A nanny takes ``MALLOC_TRIM_THRESHOLD_`` from the environment when it is set there, else
    from Dask's config, and it writes its workers' variables into the environment of the
    process it runs in: once one nanny has run in a process (a run's ``LocalCluster``), Dask's
    value is there. glibc reads these only when a process starts, so they must be in place
    before the nanny spawns its worker.
    """
    with environment(WORKER_MALLOC):
        yield


def dask_setup(worker: Any) -> None:
    """Worker preload: import the code location once, when the worker starts.

    A step then finds Dagster, odc-stac, rasterio and the project already imported (about
    5 CPU-seconds per fresh process otherwise).
    """
    import rgb_assets.core.products.composite  # noqa: F401
    import rgb_assets.definitions  # noqa: F401

    # WORKER_CONFIG for a worker started without it: its profiler is already set up; stop it.
    profiler = worker.periodic_callbacks.pop("profile", None)
    if profiler is not None:
        profiler.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _dask_cli() -> str:
    return str(Path(sys.executable).with_name("dask"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "cluster.json"
    return json.loads(path.read_text()) if path.exists() else {}


def start(
    state_dir: Path = STATE_DIR,
    port: int = DEFAULT_PORT,
    dashboard_port: int = DEFAULT_DASHBOARD,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
    timeout_s: float = 60.0,
) -> str:
    """Start scheduler and workers unless ours already run; returns the scheduler address.

    They inherit this process's environment with ``WORKER_MALLOC``; steps get their settings
    from the run, not from it.
    """
    from dask.system import CPU_COUNT

    address = f"tcp://127.0.0.1:{port}"
    state = _state(state_dir)
    if state and all(_alive(p) for p in state.get("pids", [])) and _port_open(port):
        return address
    if _port_open(port):
        raise RuntimeError(f"127.0.0.1:{port} is taken by a process this command did not start")
    state_dir.mkdir(parents=True, exist_ok=True)
    n_workers = n_workers or CPU_COUNT
    logs = [open(state_dir / name, "ab") for name in ("scheduler.log", "workers.log")]  # noqa: SIM115
    scheduler = subprocess.Popen(
        [
            _dask_cli(),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            f"127.0.0.1:{dashboard_port}",
        ],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while not _port_open(port):
        if scheduler.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the scheduler did not start; see {state_dir / 'scheduler.log'}")
        time.sleep(0.2)
    workers = subprocess.Popen(
        [
            _dask_cli(),
            "worker",
            address,
            "--host",
            "127.0.0.1",
            "--nworkers",
            str(n_workers),
            "--nthreads",
            str(threads_per_worker),
            "--memory-limit",
            memory_limit,
            "--dashboard-address",
            "127.0.0.1:0",
            "--preload",
            "rgb_assets.cluster",
            "--name",
            "rgb-assets",
        ],
        stdout=logs[1],
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # The nanny prefers these to its own ``MALLOC_TRIM_THRESHOLD_`` (see ``worker_malloc``).
        env=child_environment(WORKER_MALLOC),
    )
    for log in logs:  # the processes hold their own copies
        log.close()
    (state_dir / "cluster.json").write_text(
        json.dumps(
            {
                "address": address,
                "dashboard": f"http://127.0.0.1:{dashboard_port}/status",
                "pids": [scheduler.pid, workers.pid],
            }
        )
    )
    from distributed import Client

    with Client(address, timeout=timeout_s) as client:
        client.wait_for_workers(n_workers, timeout=timeout_s)
    return address


def stop(state_dir: Path = STATE_DIR, timeout_s: float = 20.0) -> bool:
    """Stop the processes ``start`` recorded (workers first); False when none ran."""
    state = _state(state_dir)
    pids = [p for p in reversed(state.get("pids", [])) if _alive(p)]
    for pid in pids:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    (state_dir / "cluster.json").unlink(missing_ok=True)
    return bool(pids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rgb_assets.cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    args = parser.parse_args(argv)
    if args.command == "up":
        address = start(
            port=args.port,
            dashboard_port=args.dashboard_port,
            n_workers=args.workers,
            threads_per_worker=args.threads,
        )
        state = _state(STATE_DIR)
        print(f"Dask cluster at {address}, dashboard {state.get('dashboard')}")
        return 0
    if args.command == "down":
        print("stopped" if stop() else "no cluster of ours was running")
        return 0
    state = _state(STATE_DIR)
    running = bool(state) and all(_alive(p) for p in state.get("pids", []))
    print(json.dumps(state | {"running": running}))
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
