"""The persistent cluster of ``make dev`` and ``make demo`` (``rgb_assets.cluster``): started on
127.0.0.1 with the project preloaded and Dask's profiler off on its workers, stopped whole."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import psutil

from rgb_assets.cluster import start, stop


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
                )
            )
        assert len(state) == 2
        # No statistical profiler (CPython 3.11 deadlock, see WORKER_CONFIG); project imported.
        assert all(s == (False, True) for s in state.values()), state
    finally:
        assert stop(tmp_path)
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if psutil.pid_exists(p)]
