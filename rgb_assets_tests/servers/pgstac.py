"""A real STAC API for tests: a throwaway PostgreSQL + PostGIS + pgstac cluster behind
stac-fastapi-pgstac, all on 127.0.0.1.

Public STAC APIs are unreachable from CI, and mocks do not exercise what the pipeline relies on
(CQL2 filters, paging, transactions), so tests talk to the same server software that production
deployments use. System packages come from `.ci/install-system.sh`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_OS_USER = "postgres"
INSTALL_HINT = "run `.ci/install-system.sh` as root to install PostgreSQL 15 + PostGIS"

# Declared so pgstac compares/sorts eo:cloud_cover as a number; without it sortby orders it as
# text (0, 22, 37, 7) and list-form `query` compares strings.
QUERYABLES: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2019-09/schema",
    "type": "object",
    "properties": {
        "eo:cloud_cover": {
            "description": "Estimate of cloud cover, in %",
            "type": "number",
            "minimum": 0,
            "maximum": 100,
        },
    },
}

# Durability is worthless for a throwaway test cluster; these make writes cheap.
PG_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
}

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# sockaddr_un.sun_path is 108 bytes including the NUL terminator.
MAX_SOCKET_PATH = 107


@dataclass
class PgStacServer:
    """Handle on a running test STAC API and its database."""

    url: str  # http://127.0.0.1:PORT  (the STAC API root)
    dsn: str  # postgresql://postgres@127.0.0.1:PGPORT/postgres

    def load_collection(self, collection: dict[str, Any]) -> None:
        """Upsert a collection straight into pgstac (fast path for fixtures)."""
        from pypgstac.load import Loader, Methods

        with _pgstac_db(self.dsn) as db:
            Loader(db).load_collections(iter([collection]), Methods.upsert)

    def load_items(self, items: list[dict[str, Any]]) -> None:
        """Upsert items straight into pgstac; their collection must already be loaded."""
        from pypgstac.load import Loader, Methods

        with _pgstac_db(self.dsn) as db:
            Loader(db).load_items(iter(items), Methods.upsert)

    def load_sample(self, sample_collection: Path, months: Sequence[str]) -> None:
        """The sample collection and its items of ``months`` (``YYYYMM``), see
        :func:`sample_item_rows`."""
        collection = json.loads(sample_collection.read_text())
        collection["links"] = []
        self.load_collection(collection)
        self.load_items([row for m in months for row in sample_item_rows(sample_collection, m)])

    def add_item(self, item: dict[str, Any]) -> None:
        """Add an item through the Transactions endpoint, as a live publisher would."""
        collection_id = item["collection"]
        url = f"{self.url}/collections/{collection_id}/items"
        body = json.dumps(item).encode()
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:2000]
            raise RuntimeError(f"POST {url} -> {err.code}: {detail}") from err
        if status not in (200, 201):
            raise RuntimeError(f"POST {url} -> unexpected status {status}")


def sample_item_rows(sample_collection: Path, month: str) -> list[dict[str, Any]]:
    """Items of one month (``YYYYMM``) of the sample catalog as pgstac rows of the
    ``sentinel-2-l2a`` collection, with absolute ``file://`` asset hrefs."""
    rows = []
    for path in sorted(sample_collection.parent.glob(f"S2_L2A_RO_SAMPLE_{month}*/*.json")):
        item = json.loads(path.read_text())
        for asset in item["assets"].values():
            asset["href"] = (path.parent / asset["href"]).resolve().as_uri()
        item["links"] = []
        item["collection"] = "sentinel-2-l2a"
        rows.append(item)
    return rows


@contextmanager
def pgstac_server(workdir: Path) -> Iterator[PgStacServer]:
    """Run PostgreSQL + pgstac + stac-fastapi-pgstac under `workdir` for the block's duration.

    Everything is torn down on exit, also when the block raises.
    """
    _check_binaries()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="pgstac-", dir=workdir))

    with contextlib.ExitStack() as stack:
        as_postgres = os.geteuid() == 0
        if as_postgres:
            _make_traversable(root)
            shutil.chown(root, PG_OS_USER, PG_OS_USER)
        sockdir = _socket_dir(root, stack, as_postgres)
        datadir = root / "data"
        _initdb(datadir, as_postgres)
        pg_port = _start_postgres(datadir, sockdir, root / "postgres.log", as_postgres)
        stack.callback(_stop_postgres, datadir, as_postgres)

        dsn = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
        _init_pgstac(dsn)

        api_port = _free_port()
        url = f"http://127.0.0.1:{api_port}"
        api_log = workdir / f"{root.name}-stac-api.log"
        proc = _start_api(pg_port, api_port, api_log, cwd=root)
        stack.callback(_stop_process, proc)
        _wait_for_api(url, proc, api_log)

        yield PgStacServer(url=url, dsn=dsn)


def _check_binaries() -> None:
    """Fail loudly rather than skip: a silently skipped live test hides a broken CI image."""
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / b).is_file()]
    if missing:
        raise RuntimeError(f"PostgreSQL binaries missing in {PG_BIN} ({missing}); {INSTALL_HINT}")
    postgis = Path("/usr/share/postgresql/15/extension/postgis.control")
    if not postgis.is_file():
        raise RuntimeError(f"PostGIS for PostgreSQL 15 not installed; {INSTALL_HINT}")


def _make_traversable(path: Path) -> None:
    """Give `others` search (x, not read) permission on ancestors so the postgres user can reach
    its data dir; pytest makes /tmp/pytest-of-root mode 700."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _socket_dir(root: Path, stack: contextlib.ExitStack, as_postgres: bool) -> Path:
    """Unix socket dir; falls back to a short /tmp dir when `root` would overflow sun_path."""
    sockdir = root / "sock"
    if len(f"{sockdir}/.s.PGSQL.65535") > MAX_SOCKET_PATH:
        sockdir = Path(tempfile.mkdtemp(prefix="pgsock-"))
        stack.callback(shutil.rmtree, sockdir, ignore_errors=True)
    else:
        sockdir.mkdir()
    if as_postgres:
        shutil.chown(sockdir, PG_OS_USER, PG_OS_USER)
    return sockdir


def _run(cmd: Sequence[str], as_postgres: bool, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, as the postgres OS user when we are root (initdb refuses root)."""
    full = ["runuser", "-u", PG_OS_USER, "--", *cmd] if as_postgres else list(cmd)
    return subprocess.run(full, cwd=cwd, capture_output=True, text=True, check=False)


def _initdb(datadir: Path, as_postgres: bool) -> None:
    datadir.mkdir(mode=0o700)
    if as_postgres:
        shutil.chown(datadir, PG_OS_USER, PG_OS_USER)
    datadir.chmod(0o700)
    cmd = [
        str(PG_BIN / "initdb"),
        "-D", str(datadir),
        "-U", "postgres",
        "--auth=trust",
        "-E", "UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    ]  # fmt: skip
    result = _run(cmd, as_postgres, cwd=datadir.parent)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _start_postgres(datadir: Path, sockdir: Path, logfile: Path, as_postgres: bool) -> int:
    """Start the cluster on a free port; retries because the port can be taken meanwhile."""
    settings = " ".join(f"-c {k}={v}" for k, v in PG_SETTINGS.items())
    last_error = ""
    for _ in range(3):
        port = _free_port()
        options = f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 {settings}"
        cmd = [
            str(PG_BIN / "pg_ctl"),
            "-D", str(datadir),
            "-l", str(logfile),
            "-w", "-t", str(int(STARTUP_TIMEOUT_S)),
            "-o", options,
            "start",
        ]  # fmt: skip
        result = _run(cmd, as_postgres, cwd=datadir.parent)
        if result.returncode == 0:
            return port
        last_error = f"{result.stdout}{result.stderr}\n--- {logfile} ---\n{_tail(logfile)}"
    raise RuntimeError(f"pg_ctl start failed:\n{last_error}")


def _stop_postgres(datadir: Path, as_postgres: bool) -> None:
    cmd = [str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"]
    result = _run(cmd, as_postgres, cwd=datadir.parent)
    if result.returncode != 0:
        # Do not mask the test's own exception; the log shows what happened.
        print(f"pg_ctl stop failed: {result.stdout}{result.stderr}", file=sys.stderr)


@contextmanager
def _pgstac_db(dsn: str) -> Iterator[Any]:
    """A PgstacDB whose pool is really closed afterwards (`disconnect` only drops the ref)."""
    from pypgstac.db import PgstacDB

    db = PgstacDB(dsn=dsn)
    try:
        yield db
    finally:
        pool = db.pool
        db.disconnect()
        if pool is not None:
            pool.close()


def _init_pgstac(dsn: str) -> None:
    """Install the pgstac schema, numeric queryables, and numberMatched (the context setting)."""
    from pypgstac.migrate import Migrate

    with _pgstac_db(dsn) as db:
        Migrate(db).run_migration()
    with _pgstac_db(dsn) as db:
        conn = db.connect()
        conn.execute(
            "SELECT upsert_queryables(%s::jsonb, NULL, NULL, false)", [json.dumps(QUERYABLES)]
        )
        conn.execute(
            "INSERT INTO pgstac.pgstac_settings (name, value) VALUES ('context', 'on') "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_api(pg_port: int, api_port: int, logfile: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Launch uvicorn in its own process group so teardown can signal it and its children.

    cwd is the server dir: stac-fastapi settings read a `.env` from the working directory.
    """
    env = {
        **os.environ,
        "PGUSER": "postgres",
        "PGPASSWORD": "unused-trust-auth",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_port),
        "PGDATABASE": "postgres",
        "DB_MIN_CONN_SIZE": "1",
        "DB_MAX_CONN_SIZE": "5",
        "ENABLE_TRANSACTIONS_EXTENSIONS": "TRUE",
    }
    cmd = [
        sys.executable, "-m", "uvicorn",
        "stac_fastapi.pgstac.app:create_app", "--factory",
        "--host", "127.0.0.1",
        "--port", str(api_port),
    ]  # fmt: skip
    with logfile.open("wb") as log:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_api(url: str, proc: subprocess.Popen[bytes], logfile: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"STAC API exited with {proc.returncode} during startup; "
                f"log {logfile}:\n{_tail(logfile)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/_mgmt/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"STAC API at {url} not ready after {STARTUP_TIMEOUT_S:.0f}s; "
        f"log {logfile}:\n{_tail(logfile)}"
    )


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(cannot read {path}: {err})"
