"""A published partition survives a run killed while writing its next version, and a run that
runs out of disk space (issue 13 #5): real runs (``run_partition`` in their own process group,
a ``LocalCluster`` per run), ``kill -9``, and a small tmpfs.

Each test publishes the partition once in this process, re-runs it in a subprocess that dies
or fails, checks that the store still serves the first product with its catalog item, then
re-runs it to success: same pixels, no leftovers, one catalog item.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets_tests.published import (
    COLLECTION,
    RUN_TIMEOUT_S,
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

MONTH = Month(2019, 3)  # two sample scenes, clear fraction about 0.97: it publishes
#: Free space left on a filled tmpfs: room for the manifest and catalog rewrites (tens of kB),
#: not for a composite version (about 350 kB).
LEAVE_FREE = 96 << 10


def test_run_killed_while_writing_its_version_keeps_the_published_product(
    tmp_path: Path,
) -> None:
    aoi = "faults-kill-run"
    storage, first, pixels = publish_first(aoi, MONTH, tmp_path / "store")
    folder = storage.store().local_path(PartitionPaths(COLLECTION, aoi, MONTH).composite)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = run_env(tmp_path / "store", TMPDIR=str(tmpdir))

    # The run may write its version but not switch the sidecar while this test holds the
    # partition's lock: the kill lands between the first byte and the publication, always.
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = start_run(aoi, MONTH, env, tmp_path / "killed.log")
        try:
            at_kill = wait_for_new_version(folder, first.version, proc, RUN_TIMEOUT_S)
        finally:
            kill_group(proc)
    print("in the new version at the kill:", at_kill)

    # Readers still get the first product, whole, and its catalog item.
    assert assert_consistent(storage, aoi, MONTH, catalog=True) == first
    assert_same_pixels(pixels, product_arrays(storage, first))
    left = leftovers(storage, aoi, MONTH)
    assert left, "the killed run left nothing: it was not killed mid-write"
    assert staging_left(tmpdir), "the killed run's staging folder"

    again = rerun_to_success(storage, aoi, MONTH, env, tmp_path / "rerun.log")
    assert again.version != first.version
    assert_same_pixels(pixels, product_arrays(storage, again))
    # The analysis COG is deterministic: the same bytes as the first publication.
    assert again.checksums[again.cog] == first.checksums[first.cog]
    assert leftovers(storage, aoi, MONTH) == []
    assert staging_left(tmpdir) == [], "the killed run's staging outlived the re-run"


@contextlib.contextmanager
def _tmpfs(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` mounted at ``path`` (needs root, as in CI), unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)


def _fill(folder: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free on ``folder``'s filesystem."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler"
    with filler.open("wb") as f:
        f.truncate(0)
        remaining = max(0, free - leave)
        chunk = b"\0" * (1 << 20)
        while remaining:
            remaining -= f.write(chunk[: min(len(chunk), remaining)])
    return filler


def _failure_messages(run_id: str) -> list[str]:
    """The errors (with their causes) of the run's failed steps."""
    out: list[str] = []
    with DagsterInstance.get() as instance:
        for record in instance.get_records_for_run(run_id).records:
            ev = record.event_log_entry.dagster_event
            if ev and ev.event_type == DagsterEventType.STEP_FAILURE:
                error = ev.step_failure_data.error
                while error is not None:
                    out.append(f"{ev.step_key}: {error.message}")
                    error = error.cause
    return out


@pytest.mark.parametrize("full", ["store", "tmp"])
def test_disk_full_fails_red_and_keeps_the_published_product(tmp_path: Path, full: str) -> None:
    """ENOSPC where the run writes its version (the store) or stages it (``TMPDIR``, where
    the composite step computes its Zarr store and COGs before uploading them)."""
    aoi = f"faults-enospc-{full}"
    with _tmpfs(tmp_path / "store", 16 << 10), _tmpfs(tmp_path / "tmp", 16 << 10):
        storage, first, pixels = publish_first(aoi, MONTH, tmp_path / "store")
        env = run_env(tmp_path / "store", TMPDIR=str(tmp_path / "tmp"))
        filler = _fill(tmp_path / full, LEAVE_FREE)

        log = tmp_path / "full.log"
        report = finish_run(start_run(aoi, MONTH, env, log), log, RUN_TIMEOUT_S)
        assert report["success"] is False
        errors = _failure_messages(report["run_id"])
        assert any("monthly_composite" in e and "No space left on device" in e for e in errors), (
            errors
        )
        assert assert_consistent(storage, aoi, MONTH, catalog=True) == first
        assert_same_pixels(pixels, product_arrays(storage, first))
        # The failed write removed its own version folder (``write_version``), at once.
        assert leftovers(storage, aoi, MONTH) == []
        # The staging folder may outlive the failed run: the Zarr writes of other Dask tasks
        # still running when the step removed it. The next run removes it (its owner is dead).

        filler.unlink()
        again = rerun_to_success(storage, aoi, MONTH, env, tmp_path / "rerun.log")
        assert again.version != first.version
        assert_same_pixels(pixels, product_arrays(storage, again))
        assert leftovers(storage, aoi, MONTH) == []
        assert staging_left(tmp_path / "tmp") == []
