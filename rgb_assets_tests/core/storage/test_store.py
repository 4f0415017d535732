"""Store: atomic writes, folder replacement, safe keys, listing, locking and addressing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.storage import checksums
from rgb_assets.core.storage.store import Store, gdal_s3_options


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_writes_land_whole_and_leave_no_temporary_files(tmp_path: Path):
    """write_bytes/write_text/put_file create parents, replace content, leave no .tmp files."""
    store = Store(tmp_path / "s")
    store.write_bytes("a/b/c.bin", b"\x00\x01")
    store.write_text("a/b/c.bin", "second")
    src = tmp_path / "src.txt"
    src.write_text("payload")
    store.put_file(src, "a/d.txt")
    assert store.read_text("a/b/c.bin") == "second"
    assert store.read_bytes("a/d.txt") == b"payload"
    assert store.size("a/d.txt") == 7
    assert store.sha256("a/d.txt") == checksums.file_digest(src)
    assert src.exists(), "put_file copies: the local file stays"
    assert _all_files(tmp_path / "s") == ["a", "a/b", "a/b/c.bin", "a/d.txt"]


def test_put_dir_replaces_the_whole_folder(tmp_path: Path):
    """A second put_dir leaves exactly the new folder's files (no stale file, no .old/.tmp)."""
    store = Store(tmp_path / "s")
    first = tmp_path / "first"
    (first / "sub").mkdir(parents=True)
    (first / "sub" / "old.txt").write_text("old")
    (first / "keep.txt").write_text("1")
    store.put_dir(first, "p/x.zarr")
    second = tmp_path / "second"
    second.mkdir()
    (second / "keep.txt").write_text("2")
    store.put_dir(second, "p/x.zarr")
    assert store.read_text("p/x.zarr/keep.txt") == "2"
    assert not store.exists("p/x.zarr/sub/old.txt")
    assert _all_files(tmp_path / "s") == ["p", "p/x.zarr", "p/x.zarr/keep.txt"]


@pytest.mark.parametrize("key", ["../x", "a/../../x", "a//b", "./a", "a/./b", "", "/"])
def test_unsafe_keys_are_refused_naming_key(tmp_path: Path, key: str):
    store = Store(tmp_path / "s")
    for op in (store.uri, store.exists, lambda k: store.write_text(k, "x")):
        with pytest.raises(InputError) as e:
            op(key)
        assert e.value.field == "key"
    assert not (tmp_path / "x").exists()


def test_leading_and_trailing_slashes_are_normalised(tmp_path: Path):
    store = Store(tmp_path / "s")
    store.write_text("/a/b.txt/", "x")
    assert store.read_text("a/b.txt") == "x"


def test_listdir_delete_and_exists(tmp_path: Path):
    """listdir gives sorted names directly under a key ([] when missing); delete is recursive."""
    store = Store(tmp_path / "s")
    for key in ("d/b.txt", "d/a.txt", "d/sub/c.txt"):
        store.write_text(key, key)
    assert store.listdir("d") == ["a.txt", "b.txt", "sub"]
    assert store.listdir("missing") == []
    store.delete("d/sub")
    assert store.listdir("d") == ["a.txt", "b.txt"]
    store.delete("d/sub")  # deleting what is gone is a no-op
    assert store.exists("d/a.txt") and not store.exists("d/sub/c.txt")


def test_lock_serialises_two_threads(tmp_path: Path):
    """The second holder enters only after the first left: the critical sections never overlap."""
    store = Store(tmp_path / "s")
    spans: list[tuple[float, float]] = []
    entered = threading.Event()

    def hold(pause: float) -> None:
        with store.lock("catalogs/.lock"):
            start = time.monotonic()
            entered.set()
            time.sleep(pause)
            spans.append((start, time.monotonic()))

    first = threading.Thread(target=hold, args=(0.3,))
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=hold, args=(0.0,))
    second.start()
    first.join(5)
    second.join(5)
    assert len(spans) == 2
    (s1, e1), (s2, _) = sorted(spans)
    assert s2 >= e1, f"second entered at {s2}, before the first left at {e1}"


def test_uri_and_local_path(tmp_path: Path):
    """Local stores address files by absolute path; a remote store by URL, with no local path."""
    store = Store(tmp_path / "s" / ".." / "s")
    assert store.root == str((tmp_path / "s").resolve())
    assert store.is_local
    assert store.uri("a/b.tif") == f"{store.root}/a/b.tif"
    assert store.local_path("a/b.tif") == Path(store.root) / "a" / "b.tif"
    remote = Store("memory://bucket/prefix/")
    assert not remote.is_local
    assert remote.uri("a/b.tif") == "memory://bucket/prefix/a/b.tif"
    with pytest.raises(RuntimeError):
        remote.local_path("a/b.tif")


def test_gdal_s3_options():
    assert gdal_s3_options(None) == {}
    assert gdal_s3_options("http://127.0.0.1:8333") == {
        "AWS_S3_ENDPOINT": "127.0.0.1:8333",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }
    assert gdal_s3_options("https://s3.example.org")["AWS_HTTPS"] == "YES"
    with pytest.raises(InputError) as e:
        gdal_s3_options("s3.example.org")
    assert e.value.field == "endpoint_url"
