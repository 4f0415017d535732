"""A store rooted at a local folder or an fsspec URL (s3://bucket/prefix), with atomic writes.

Every output goes through :class:`Store`, so a reader never sees a half-written file: local files
are written to a temporary sibling and renamed into place; object stores publish a whole object
per PUT. Keys are ``/``-separated paths relative to the root.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import fsspec
import pystac
from pystac.stac_io import DefaultStacIO

from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.storage import checksums


def gdal_s3_options(endpoint_url: str | None) -> dict[str, str]:
    """GDAL configuration to read ``s3://`` hrefs from an S3-compatible endpoint (MinIO,
    SeaweedFS, Ceph...): GDAL does not read botocore's ``AWS_ENDPOINT_URL``. Empty for AWS.

    Credentials are not part of it: GDAL, like s3fs, takes them from the AWS environment
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, instance roles).
    """
    if not endpoint_url:
        return {}
    parsed = urlparse(endpoint_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError("endpoint_url", f"{endpoint_url!r} is not an http(s) URL")
    return {
        "AWS_S3_ENDPOINT": parsed.netloc,
        "AWS_HTTPS": "YES" if parsed.scheme == "https" else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",  # path-style addressing, as S3-compatible servers expect
    }


#: Temporary siblings (``.tmp-*``, ``<name>.tmp-*``) and replaced folders (``<name>.old-*``)
#: older than this are removed whatever their owner: no write takes that long.
STALE_AFTER_S = 6 * 3600
_TEMP_RE = re.compile(r"(?:^|\.)(?:tmp|old)-(?:(?P<pid>\d+)-)?[0-9a-f]+$")


def _temp_suffix(kind: str) -> str:
    """``tmp-<pid>-<uuid>``: the pid lets a later run tell a dead writer's leftovers from a
    live concurrent writer's staging."""
    return f"{kind}-{os.getpid()}-{uuid.uuid4().hex}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path, prefix: str = "") -> list[str]:
    """Remove the entries of ``folder`` (starting with ``prefix``) named as temporary or
    replaced (``*.tmp-<pid>-*``, ``*.old-<pid>-*``) that no live process on this host owns, or
    older than :data:`STALE_AFTER_S`; old-style names without a pid once older than 10 minutes.
    Returns the names removed."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    for entry in entries:
        m = _TEMP_RE.search(entry.name)
        if not m or not entry.name.startswith(prefix):
            continue
        pid = m.group("pid")
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        # Old-style names (no pid) have no owner to ask: by age only.
        owned = pid is not None and age <= STALE_AFTER_S and pid_alive(int(pid))
        if owned or (pid is None and age <= 600):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def new_staging(prefix: str, label: str = "") -> Path:
    """A new private local folder ``<TMPDIR>/<prefix><label>.tmp-<pid>-<uuid>`` for a step's
    intermediate files; the caller removes it. Staging folders with ``prefix`` left by dead
    processes (a run killed with kill -9, a lost worker) are removed first: nothing else
    would, and a temporary folder filled by killed runs fails every later run on ENOSPC."""
    folder = Path(tempfile.gettempdir())
    remove_stale(folder, prefix)
    path = folder / f"{prefix}{label}.{_temp_suffix('tmp')}"
    path.mkdir(mode=0o700)
    return path


@contextlib.contextmanager
def staging_folder(prefix: str, label: str = "") -> Iterator[Path]:
    """:func:`new_staging`, removed on exit."""
    path = new_staging(prefix, label)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _create_file(path: str) -> int:
    """An exclusive new file created with mode 0666 minus the process umask (0644 by default);
    ``mkstemp`` would make it 0600, unreadable by web servers and other users."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def _link_or_copy(src: str | Path, dest: str) -> None:
    """``dest`` becomes a hard link to the finished file ``src`` when both are on one file
    system (no byte is copied: archiving a realistic partition copied 300 MB of clips from
    staging into the store, 1 CPU-second per worker), else a copy. Linked only when ``src``
    has the mode a new file gets, so the store's files keep the umask's permissions."""
    new_file_mode = 0o666 & ~mask if (mask := _umask()) is not None else None
    if new_file_mode is not None and stat.S_IMODE(os.stat(src).st_mode) == new_file_mode:
        try:
            os.link(src, dest)
            return
        except OSError:  # another file system, or links not allowed there
            pass
    # A copy gets the umask's mode, as every file the store writes (``mkstemp``'s are 0600).
    shutil.copyfile(src, dest)


def _umask() -> int | None:
    """This process's umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return None


def _replace_file(path: str, fill: Callable[[str], object]) -> None:
    """``fill`` a temporary sibling of ``path``, then rename it over ``path`` (atomic); the
    sibling is removed when filling fails."""
    tmp = f"{path}.{_temp_suffix('tmp')}"
    try:
        fill(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _copy_tree(src: str | Path, dest: str) -> None:
    """Copy a folder tree with umask permissions (``copytree`` would copy the staging folder's
    0700 mode from ``mkdtemp``); files are linked when they can be (``_link_or_copy``)."""
    src = str(src)
    for folder, _, files in os.walk(src):
        target = os.path.join(dest, os.path.relpath(folder, src))
        os.makedirs(target, exist_ok=True)
        for name in files:
            _link_or_copy(os.path.join(folder, name), os.path.join(target, name))


def _check_key(key: str) -> str:
    parts = key.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InputError("key", f"{key!r} is not a safe relative store path")
    return "/".join(parts)


class Store:
    """Files under one root; local paths and s3:// (or any fsspec) URLs behave the same."""

    def __init__(self, root: str | Path, **storage_options: Any) -> None:
        root = str(root)
        if "://" not in root:
            root = str(Path(root).expanduser().resolve())
        self.root = root.rstrip("/")
        if fsspec.core.split_protocol(self.root)[0] not in (None, "file", "local"):
            # Runs in other processes publish while services keep their store for hours:
            # a cached listing would hide their objects (a product "never published").
            storage_options.setdefault("use_listings_cache", False)
        self.fs, self._base = fsspec.core.url_to_fs(self.root, **storage_options)
        self.is_local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # -- addressing -------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        return f"{self._base}/{_check_key(key)}"

    def uri(self, key: str) -> str:
        """An href readers (pystac, rasterio, odc-stac) can open: a local path or a URL."""
        return self._path(key) if self.is_local else f"{self.root}/{_check_key(key)}"

    def local_path(self, key: str) -> Path:
        if not self.is_local:
            raise RuntimeError(f"{self} is not on local disk")
        return Path(self._path(key))

    # -- reading ----------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(self._path(key))

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def size(self, key: str) -> int:
        return int(self.fs.size(self._path(key)))

    def sha256(self, key: str) -> str:
        with self.fs.open(self._path(key), "rb") as f:
            return checksums.stream_digest(f, "sha256")

    def listdir(self, key: str) -> list[str]:
        """Names directly under ``key`` (empty when it does not exist)."""
        path = self._path(key)
        if not self.fs.exists(path):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False))

    # -- cleaning up after killed writers -----------------------------------------------------
    def clean_stale(self, key: str) -> list[str]:
        """Remove temporary and replaced siblings under folder ``key`` that no live process owns.

        A writer killed mid-write (kill -9, ENOSPC) leaves ``.tmp-*`` files, ``<name>.tmp-*``
        staging and ``<name>.old-*`` folders; the next write into the same folder removes
        those of dead processes on this host, and any older than :data:`STALE_AFTER_S`.
        Returns the names removed. Object stores publish whole objects and leave none.
        """
        if not self.is_local:
            return []
        return remove_stale(Path(self._path(key)) if key else Path(self._base))

    def _parent_key(self, key: str) -> str:
        return _check_key(key).rpartition("/")[0]

    # -- writing (atomic) --------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.clean_stale(self._parent_key(key))
            tmp = str(Path(path).parent / f".{_temp_suffix('tmp')}")
            fd = _create_file(tmp)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        else:
            self.fs.pipe_file(path, data)

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def put_file(self, local: str | Path, key: str) -> None:
        """Publish a finished local file under ``key`` (linked, else copied, on local disk; the
        caller must not change ``local`` afterwards, only delete it)."""
        path = self._path(key)
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.clean_stale(self._parent_key(key))
            _replace_file(path, functools.partial(_link_or_copy, local))
        else:
            self.fs.put_file(str(local), path)

    def copy_files(self, sources: list[str], targets: list[str]) -> None:
        """Copy files within the store: each target replaced atomically on local disk, one
        server-side copy per file on an object store (no byte passes through this process)."""
        if len(sources) != len(targets):
            raise ValueError("copy_files: as many targets as sources")
        if not self.is_local:
            if sources:
                self.fs.copy([self._path(k) for k in sources], [self._path(k) for k in targets])
            return
        for source, target in zip(sources, targets, strict=True):
            path = self._path(target)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            _replace_file(path, functools.partial(shutil.copyfile, self._path(source)))

    def put_dir(self, local: str | Path, key: str) -> None:
        """Publish a finished local folder (e.g. a Zarr store), replacing any previous one.

        Locally the new folder is renamed into place and the old one removed afterwards, so the
        key always names one complete version. Object stores get the old prefix removed first.
        """
        path = self._path(key)
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.clean_stale(self._parent_key(key))
            staged = f"{path}.{_temp_suffix('tmp')}"
            try:
                _copy_tree(local, staged)
            except BaseException:
                shutil.rmtree(staged, ignore_errors=True)
                raise
            old = None
            if os.path.exists(path):
                old = f"{path}.{_temp_suffix('old')}"
                os.replace(path, old)
            os.replace(staged, path)
            if old:
                shutil.rmtree(old, ignore_errors=True)
        else:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
            self.fs.put(str(local).rstrip("/") + "/", path, recursive=True)

    def age_s(self, key: str) -> float | None:
        """Seconds since ``key`` was last modified (None when it does not exist)."""
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError:
            return None
        when = info.get("mtime") or info.get("LastModified") or info.get("created")
        if when is None:
            return None
        stamp = when.timestamp() if hasattr(when, "timestamp") else float(when)
        return max(0.0, time.time() - stamp)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Serialise read-modify-write of shared files (catalogs) between concurrent runs.

        Local stores use an advisory ``flock``; object stores have no lock primitive, so there
        the caller relies on one writer per catalog (documented in the README).
        """
        if not self.is_local:
            yield
            return
        import fcntl

        lock_path = self.local_path(key)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


class FsspecStacIO(DefaultStacIO):
    """pystac IO over fsspec with atomic local writes, so catalogs live wherever the store does.

    With ``fs`` (the store's filesystem), remote hrefs are opened through it, so the store's
    options (an S3-compatible endpoint, credentials) apply to catalog files too.
    """

    def __init__(self, fs: Any | None = None) -> None:
        super().__init__()
        self.fs = fs

    def _open(self, href: str, mode: str) -> Any:
        if self.fs is not None:
            return self.fs.open(href, mode, encoding="utf-8")
        return fsspec.open(href, mode, encoding="utf-8")

    def read_text_from_href(self, href: str) -> str:
        if href.startswith(("http://", "https://")):
            return super().read_text_from_href(href)
        if "://" not in href or href.startswith("file://"):
            return Path(href.removeprefix("file://")).read_text(encoding="utf-8")
        with self._open(href, "r") as f:
            return f.read()

    def write_text_to_href(self, href: str, txt: str) -> None:
        if "://" in href and not href.startswith("file://"):
            with self._open(href, "w") as f:  # one PUT: readers never see a partial object
                f.write(txt)
            return
        path = Path(href.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(path.parent / f".{_temp_suffix('tmp')}")
        try:
            with os.fdopen(_create_file(tmp), "w", encoding="utf-8") as f:
                f.write(txt)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def stac_io(store: Store | None = None) -> pystac.StacIO:
    """pystac IO for catalogs in ``store`` (any store), or for local and public hrefs."""
    return FsspecStacIO(None if store is None or store.is_local else store.fs)
