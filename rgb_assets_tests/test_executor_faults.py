"""Both Dask workers of a shared cluster killed (``kill -9``) while a run's composite step
writes its version (issue 13 #5): real ``dask scheduler`` and ``dask worker`` processes on
127.0.0.1, the run in its own process (``run_partition``) pointed at them.

New workers join after the kill, as a supervisor would restart them; the run must then end,
recovered or red, within a bound (a hanging run fails the test), the store must still hold
one complete product with its catalog item, and a re-run gives the same pixels and leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from pathlib import Path

from dagster import DagsterInstance

from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets_tests.published import (
    COLLECTION,
    assert_consistent,
    assert_same_pixels,
    finish_run,
    kill_group,
    leftovers,
    product_arrays,
    publish_first,
    rerun_to_success,
    run_env,
    staging_left,
    start_run,
    wait_for_new_version,
)
from rgb_assets_tests.servers.dask_cluster import dask_cluster

MONTH = Month(2019, 3)
#: The killed run must end (recovered or failed) within this once new workers are up.
END_TIMEOUT_S = 120
START_TIMEOUT_S = 180


def test_workers_killed_while_writing_leave_the_store_consistent(tmp_path: Path) -> None:
    aoi = "faults-kill-workers"
    store_root = tmp_path / "store"
    storage, first, pixels = publish_first(aoi, MONTH, store_root)
    folder = storage.store().local_path(PartitionPaths(COLLECTION, aoi, MONTH).composite)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with dask_cluster(tmp_path / "dask", env={"TMPDIR": str(tmpdir)}) as cluster:
        assert cluster.start_worker is not None
        env = run_env(store_root, RGB_ASSETS_DASK_SCHEDULER=cluster.address)
        log = tmp_path / "killed.log"
        # Holding the partition's lock, the step can write its version but not publish it:
        # the workers die between the first byte written and the publication.
        with open(folder / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            proc = start_run(aoi, MONTH, env, log)
            try:
                at_kill = wait_for_new_version(folder, first.version, proc, START_TIMEOUT_S)
                for worker in cluster.workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
            except BaseException:
                kill_group(proc)
                raise
        print("in the new version when the workers died:", at_kill)
        assert leftovers(storage, aoi, MONTH), "the workers were not killed mid-write"
        assert assert_consistent(storage, aoi, MONTH, catalog=True) == first

        cluster.start_worker("w2")
        cluster.start_worker("w3")
        report = finish_run(proc, log, END_TIMEOUT_S)
        with DagsterInstance.get() as instance:
            run = instance.get_run_by_id(report["run_id"])
        assert run is not None and run.is_finished
        assert run.is_success == report["success"]
        print("the run with killed workers:", run.status.value)
        # Recovered or red, the store serves one complete product, described by its item.
        files = assert_consistent(storage, aoi, MONTH, catalog=True)
        assert files == first or report["success"]
        assert_same_pixels(pixels, product_arrays(storage, files))

        again = rerun_to_success(storage, aoi, MONTH, env, tmp_path / "rerun.log")
    assert again.version not in (first.version, files.version)
    assert_same_pixels(pixels, product_arrays(storage, again))
    assert again.checksums[again.cog] == first.checksums[first.cog]
    assert leftovers(storage, aoi, MONTH) == []
    assert staging_left(tmpdir) == [], "staging of the killed workers outlived the re-run"
