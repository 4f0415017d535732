"""Live fixtures: a real ``dagster dev`` (webserver + daemon) on the demo deployment, with the
code location served by ``rgb-assets code-server``, as ``make dev`` runs them.

The server runs in its own process group with SIGINT restored to the default handler (started
from a non-interactive parent it would otherwise ignore SIGINT/SIGTERM), so teardown can stop
everything it spawned and check that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rgb_assets.code_server import wait_ready

REPO = Path(__file__).resolve().parents[2]
SAMPLE_COLLECTION = REPO / "data" / "sample" / "collection.json"
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class LiveDagster:
    url: str  # http://127.0.0.1:PORT
    port: int
    home: Path
    storage_root: Path
    log: Path

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen[bytes]) -> list[str]:
    """SIGINT the group (dagster dev shuts its children down); SIGKILL what lingers.

    Returns what had to be killed, so the caller can fail on an unclean shutdown.
    """
    pgid = proc.pid
    problems: list[str] = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        problems.append(f"dagster dev ignored SIGINT for {STOP_TIMEOUT_S:.0f} s")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if group_alive(pgid):  # children (code server, run workers) that outlived the parent
        problems.append("processes of dagster dev survived its exit")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(1)
    return problems


@contextlib.contextmanager
def dagster_dev(
    base: Path, env_extra: dict[str, str] | None = None, instance_yaml: str = ""
) -> Iterator[LiveDagster]:
    """``dagster dev`` (webserver + daemon) on 127.0.0.1 with a fresh ``DAGSTER_HOME`` under
    ``base``, the demo deployment and its own store; stopped with SIGINT, checked clean."""
    if not SAMPLE_COLLECTION.exists():
        pytest.fail(f"sample catalog missing at {SAMPLE_COLLECTION}: run `make sample-data`")
    home = base / "dagster_home"
    home.mkdir(parents=True)
    # The test's settings merged over the dev instance's (section by section, theirs win).
    config = yaml.safe_load((REPO / "dagster.dev.yaml").read_text())
    for key, value in (yaml.safe_load(instance_yaml) or {}).items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    storage_root = base / "store"
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RGB_ASSETS_DEPLOYMENT": "demo",
        "RGB_ASSETS_STORAGE_ROOT": str(storage_root),
        "RGB_ASSETS_STAC_URL": str(SAMPLE_COLLECTION),
        "PYTHONUNBUFFERED": "1",
        **(env_extra or {}),
    }
    env.pop("RGB_ASSETS_DASK_SCHEDULER", None)
    # As `make dev`: the warm code server, which the webserver and daemon reach through the
    # deployment's workspace file.
    code_port = free_port()
    env |= {"DAGSTER_CODE_SERVER_HOST": "127.0.0.1", "DAGSTER_CODE_SERVER_PORT": str(code_port)}
    bin_dir = Path(sys.executable).parent
    with (base / "code-server.log").open("wb") as out:
        code_server = subprocess.Popen(
            [str(bin_dir / "rgb-assets"), "code-server", "-h", "127.0.0.1", "-p", str(code_port)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready("127.0.0.1", code_port, code_server.pid, STARTUP_TIMEOUT_S)
    except RuntimeError as e:
        _stop(code_server)
        pytest.fail(f"{e}:\n{(base / 'code-server.log').read_text()[-3000:]}")
    workspace = str(REPO / "docker" / "workspace.yaml")
    cmd = [str(bin_dir / "dagster"), "dev", "-w", workspace, "-h", "127.0.0.1", "-p", str(port)]
    log = base / "dagster-dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
    server = LiveDagster(f"http://127.0.0.1:{port}", port, home, storage_root, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n{server.tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"dagster dev not ready after {STARTUP_TIMEOUT_S:.0f}s:\n{server.tail()}"
                )
            time.sleep(1)
        _wait_for_location(server)
        yield server
    finally:
        problems = _stop(proc)
        problems += [f"code server: {p}" for p in _stop(code_server)]
        assert not is_listening(port), f"port {port} still listening after shutdown"
        assert not is_listening(code_port), f"port {code_port} still listening after shutdown"
        assert not group_alive(proc.pid), "processes of dagster dev survived shutdown"
        assert not group_alive(code_server.pid), "processes of the code server survived shutdown"
        assert not problems, f"unclean shutdown: {problems}\n{server.tail()}"


@pytest.fixture(scope="session")
def live_dagster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDagster]:
    with dagster_dev(tmp_path_factory.mktemp("live-dagster")) as server:
        yield server


def _wait_for_location(server: LiveDagster) -> None:
    """/server_info answers before the code location has loaded; wait for the job to resolve."""
    import httpx

    query = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
      name locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            data = httpx.post(server.graphql_url, json={"query": query}, timeout=10).json()
            entries = data["data"]["workspaceOrError"]["locationEntries"]
            last = entries
            kinds = [
                e["locationOrLoadError"]["__typename"] for e in entries if e["locationOrLoadError"]
            ]
            if kinds and all(k == "RepositoryLocation" for k in kinds):
                return
            if "PythonError" in kinds:
                pytest.fail(f"code location failed to load: {entries}")
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as e:
            last = e
        time.sleep(1)
    pytest.fail(f"code location not loaded: {last}\n{server.tail()}")
