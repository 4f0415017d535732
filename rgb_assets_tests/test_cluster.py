"""The persistent cluster of ``make dev`` and ``make demo`` (``rgb_assets.cluster``): started on
127.0.0.1 with the project preloaded and Dask's profiler off on its workers, stopped whole."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import psutil

from rgb_assets.cluster import WORKER_MALLOC, start, stop


def start_environ(raw: bytes) -> dict[str, str]:
    """A process's ``/proc/<pid>/environ``: its environment when it started (what glibc's
    malloc read)."""
    return dict(v.decode().split("=", 1) for v in raw.split(b"\0") if b"=" in v)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_persistent_cluster_workers_are_preloaded_without_the_profiler(tmp_path: Path) -> None:
    from distributed import Client

    address = start(tmp_path, port=_free_port(), dashboard_port=_free_port(), n_workers=2)
    pids = json.loads((tmp_path / "cluster.json").read_text())["pids"]
    try:
        assert address.startswith("tcp://127.0.0.1:")
        with Client(address, set_as_default=False) as client:
            state = client.run(
                lambda dask_worker: (
                    "profile" in dask_worker.periodic_callbacks,
                    "rgb_assets.definitions" in sys.modules,
                    Path("/proc/self/environ").read_bytes(),
                )
            )
        assert len(state) == 2
        # No statistical profiler (CPython 3.11 deadlock, see WORKER_CONFIG); project imported.
        assert all(s[:2] == (False, True) for s in state.values()), state
        # glibc's malloc settings were in each worker's environment when it started.
        for *_, raw in state.values():
            environ = start_environ(raw)
            assert {k: environ.get(k) for k in WORKER_MALLOC} == WORKER_MALLOC, environ
    finally:
        assert stop(tmp_path)
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if psutil.pid_exists(p)]
