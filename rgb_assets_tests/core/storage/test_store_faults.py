"""Store writes leave nothing half-written and use the process umask (issue 13 #5, #8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rgb_assets.core.storage.store import Store, stac_io


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_files_and_folders_get_the_umask_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "store")
        store.write_text("catalogs/raw/catalog.json", "{}")
        local = tmp_path / "staged.tif"
        local.write_bytes(b"cog")
        local.chmod(0o600)
        store.put_file(local, "composites/a/b.tif")
        staging = tmp_path / "staging.zarr"
        (staging / "red").mkdir(parents=True)
        (staging / "red" / "0.0").write_bytes(b"chunk")
        staging.chmod(0o700)
        store.put_dir(staging, "composites/a/b.zarr")
        stac_io().write_text_to_href(str(tmp_path / "store" / "item.json"), "{}")
    finally:
        os.umask(old)
    root = tmp_path / "store"
    assert _mode(root / "catalogs/raw/catalog.json") == 0o644
    assert _mode(root / "composites/a/b.tif") == 0o644
    assert _mode(root / "composites/a/b.zarr") == 0o755
    assert _mode(root / "composites/a/b.zarr/red/0.0") == 0o644
    assert _mode(root / "item.json") == 0o644


def test_finished_files_are_linked_into_the_store_not_copied(tmp_path: Path) -> None:
    """On one file system a published file is the staged file's inode (no bytes copied), with
    the umask's mode; a staged file of another mode is copied, so the store's mode holds."""
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "store")
        plain, private = tmp_path / "plain.tif", tmp_path / "private.tif"
        plain.write_bytes(b"clip")
        private.write_bytes(b"secret-mode clip")
        private.chmod(0o600)
        store.put_file(plain, "raw/a.tif")
        store.put_file(private, "raw/b.tif")
        staging = tmp_path / "staging.zarr"
        (staging / "red").mkdir(parents=True)
        (staging / "red" / "0.0").write_bytes(b"chunk")
        store.put_dir(staging, "composites/c.zarr")
    finally:
        os.umask(old)
    root = tmp_path / "store"
    assert (root / "raw/a.tif").stat().st_ino == plain.stat().st_ino
    assert (root / "composites/c.zarr/red/0.0").stat().st_ino == (staging / "red/0.0").stat().st_ino
    assert (root / "raw/b.tif").stat().st_ino != private.stat().st_ino
    assert (root / "raw/b.tif").read_bytes() == b"secret-mode clip"
    assert _mode(root / "raw/a.tif") == _mode(root / "raw/b.tif") == 0o644
    # The staged copy can go: the store's file stays.
    plain.unlink()
    assert (root / "raw/a.tif").read_bytes() == b"clip"


def test_leftovers_of_a_dead_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.write_text("composites/p/item.json", "{}")
    folder = tmp_path / "store" / "composites" / "p"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    (folder / f"x.zarr.old-{pid}-abc123").mkdir()
    (folder / f"x.zarr.old-{pid}-abc123" / "chunk").write_bytes(b"5.8 MB before")
    (folder / f"x.tif.tmp-{pid}-def456").write_bytes(b"half")
    (folder / f".tmp-{pid}-0a1b").write_bytes(b"")
    # Old-style names (no pid) from before this change: removed once older than 10 minutes.
    legacy = folder / "x.zarr.old-0123456789abcdef"
    legacy.mkdir()
    past = time.time() - 3600
    os.utime(legacy, (past, past))
    recent_legacy = folder / "y.tif.tmp-fedcba9876543210"
    recent_legacy.write_bytes(b"maybe in use")
    # A live writer's staging (this process) must survive: concurrent runs of one partition.
    live = folder / f"z.tif.tmp-{os.getpid()}-feed"
    live.write_bytes(b"in progress")
    store.write_text("composites/p/item.json", '{"v": 2}')
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["item.json", recent_legacy.name, live.name]), names


def test_kill_9_mid_write_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path: Path) -> None:
    """A writer killed while writing a 200 MB object: readers still see the previous complete
    file, and the next write of that folder removes the dead writer's temporary file."""
    store = Store(tmp_path / "store")
    store.write_text("catalogs/catalog.json", '{"version": 1}')
    code = (
        "import sys; from rgb_assets.core.storage.store import Store\n"
        f"s = Store({str(tmp_path / 'store')!r})\n"
        "data = b'x' * (200 << 20)\n"
        "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
        "s.write_bytes('catalogs/catalog.json', data)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    folder = tmp_path / "store" / "catalogs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not [p for p in folder.iterdir() if ".tmp-" in p.name]:
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    temps = [p for p in folder.iterdir() if ".tmp-" in p.name]
    if not temps:
        pytest.fail("the writer finished before it could be killed mid-write")
    assert (folder / "catalog.json").read_text() == '{"version": 1}'
    store.write_text("catalogs/catalog.json", '{"version": 2}')
    assert sorted(p.name for p in folder.iterdir()) == ["catalog.json"]
    assert (folder / "catalog.json").read_text() == '{"version": 2}'
