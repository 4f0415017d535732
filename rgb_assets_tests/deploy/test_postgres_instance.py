"""Dagster on PostgreSQL as deployed: docker/dagster.yaml and docker/workspace.yaml, a user-code
gRPC server, ``dagster-webserver`` and ``dagster-daemon run`` as separate processes (not
``dagster dev``), on a throwaway Debian PostgreSQL cluster, all on 127.0.0.1.

Checks that a partition run launched through GraphQL succeeds, that the daemon records sensor
ticks (the AOI inbox sensor adds a dynamic partition), and that AOI partitions, run history,
ticks and the sensor's running state survive a restart of webserver and daemon. Marker
``live``; about a minute and a half.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster_graphql import DagsterGraphQLClient

from rgb_assets.assets import ALL_ASSETS
from rgb_assets_tests.servers.pgstac import (
    PG_OS_USER,
    _check_binaries,
    _free_port,
    _initdb,
    _make_traversable,
    _socket_dir,
    _start_postgres,
    _stop_postgres,
)

pytestmark = [
    pytest.mark.live,
    # The partition tags Dagster itself sets (dagster/partition/aoi) fail its new tag-key check.
    pytest.mark.filterwarnings("ignore:Non-compliant tag keys:DeprecationWarning"),
]

REPO = Path(__file__).resolve().parents[2]
SAMPLE_COLLECTION = REPO / "data" / "sample" / "collection.json"
SAMPLE_AOI = REPO / "data" / "sample_aoi.geojson"
BIN = Path(sys.executable).parent
AOI = "carpathians-sample"
INBOX_AOI = "inbox-forest"
LOCATION = "rgb_assets"
REPOSITORY = "__repository__"
SENSOR = "aoi_files_sensor"
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


def _default_sigint() -> None:
    """Started from a non-interactive parent, dagster processes inherit SIGINT ignored and
    would then ignore SIGINT/SIGTERM; restore the default so they can be stopped."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Deployment:
    """The environment and processes of a PostgreSQL-backed Dagster deployment."""

    base: Path
    env: dict[str, str]
    webserver_port: int
    procs: dict[str, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webserver_port}"

    @property
    def store(self) -> Path:
        return Path(self.env["RGB_ASSETS_STORAGE_ROOT"])

    def start(self, name: str, cmd: list[str]) -> None:
        log = (self.base / f"{name}.log").open("ab")
        with log:
            self.procs[name] = subprocess.Popen(
                cmd,
                cwd=self.base,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_default_sigint,
            )

    def stop(self, name: str) -> None:
        """SIGINT the process group; SIGKILL it if it lingers. Fails on an unclean stop."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)
            pytest.fail(f"{name} ignored SIGINT for {STOP_TIMEOUT_S:.0f} s")
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if _group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"processes of {name} outlived it")

    def start_servers(self) -> None:
        """Webserver and daemon, both reading the code location from the gRPC server."""
        workspace = str(Path(self.env["DAGSTER_HOME"]) / "workspace.yaml")
        self.start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.webserver_port),
             "-w", workspace],
        )  # fmt: skip
        self.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace])
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last: object = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited {proc.returncode}:\n{self.tail(name)}")
            try:
                kinds = [
                    e["locationOrLoadError"]["__typename"]
                    for e in self.gql(
                        """{ workspaceOrError { ... on Workspace { locationEntries {
                          locationOrLoadError { __typename } } } } }"""
                    )["workspaceOrError"]["locationEntries"]
                    if e["locationOrLoadError"]
                ]
                if kinds == ["RepositoryLocation"]:
                    return
                last = kinds
            except (httpx.HTTPError, urllib.error.URLError, KeyError, TypeError) as e:
                last = e
            time.sleep(1)
        pytest.fail(f"webserver not ready: {last}\n{self.tail('webserver')}")

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.base / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def _postgres(workdir: Path) -> Iterator[int]:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 (the helpers of the STAC API tier)."""
    _check_binaries()
    root = Path(tempfile.mkdtemp(prefix="dagster-pg-", dir=workdir))
    as_postgres = os.geteuid() == 0
    with contextlib.ExitStack() as stack:
        if as_postgres:
            _make_traversable(root)
            shutil.chown(root, PG_OS_USER, PG_OS_USER)
        sockdir = _socket_dir(root, stack, as_postgres)
        datadir = root / "data"
        _initdb(datadir, as_postgres)
        port = _start_postgres(datadir, sockdir, root / "postgres.log", as_postgres)
        stack.callback(_stop_postgres, datadir, as_postgres)
        yield port


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not SAMPLE_COLLECTION.exists():
        pytest.fail(f"sample catalog missing at {SAMPLE_COLLECTION}: run `make sample-data`")
    base = tmp_path_factory.mktemp("pg-deployment")
    home = base / "dagster_home"
    home.mkdir()
    for name in ("dagster.yaml", "workspace.yaml"):  # the deployment's files, unchanged
        shutil.copyfile(REPO / "docker" / name, home / name)
    with _postgres(base) as pg_port:
        code_port = _free_port()
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg_port),
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "unused-trust-auth",
            "DAGSTER_PG_DB": "postgres",
            "DAGSTER_STORAGE_DIR": str(base / "storage"),
            "DAGSTER_COMPUTE_LOG_DIR": str(base / "storage" / "compute_logs"),
            "DAGSTER_MAX_CONCURRENT_RUNS": "2",
            "DAGSTER_GRPC_TIMEOUT_SECONDS": "300",  # as in docker/compose.yaml
            "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
            "DAGSTER_CODE_SERVER_PORT": str(code_port),
            "RGB_ASSETS_DEPLOYMENT": "demo",
            "RGB_ASSETS_STAC_URL": str(SAMPLE_COLLECTION),
            "RGB_ASSETS_STORAGE_ROOT": str(base / "store"),
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("RGB_ASSETS_DASK_SCHEDULER", "RGB_ASSETS_AOI_INBOX", "RGB_ASSETS_PUBLISH_URL"):
            env.pop(name, None)
        migrate = subprocess.run(
            [str(BIN / "dagster"), "instance", "migrate"], env=env, capture_output=True, text=True
        )
        assert migrate.returncode == 0, migrate.stderr
        dep = Deployment(base, env, _free_port(), {})
        try:
            dep.start(
                "code-server",
                [str(BIN / "rgb-assets"), "code-server", "-m", "rgb_assets.definitions",
                 "--location-name", LOCATION, "-h", "127.0.0.1", "-p", str(code_port)],
            )  # fmt: skip
            dep.start_servers()
            yield dep
        finally:
            for name in ("daemon", "webserver", "code-server"):
                if name in dep.procs:
                    dep.stop(name)


def test_instance_config_is_the_deployment(deployment: Deployment, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """docker/dagster.yaml resolves to PostgreSQL storages, the queued coordinator with its
    limits, run retries and run monitoring."""
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    for key, value in deployment.env.items():
        if key.startswith(("DAGSTER_", "RGB_ASSETS_")):
            monkeypatch.setenv(key, value)
    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert coordinator.get_run_queue_config().max_concurrent_runs == 2
        limits = {lim["key"] for lim in coordinator.get_run_queue_config().tag_concurrency_limits}
        assert {"dagster/backfill", "dagster/partition/aoi"} <= limits
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 180


def _ticks(dep: Deployment) -> list[dict[str, Any]]:
    data = dep.gql(
        """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename
          ... on Sensor { sensorState { status ticks(limit: 50) {
            id status timestamp dynamicPartitionsRequestResults { partitionKeys } } } } } }""",
        {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
               "sensorName": SENSOR}},
    )  # fmt: skip
    return list(data["sensorOrError"]["sensorState"]["ticks"])


def _sensor_status(dep: Deployment) -> str:
    data = dep.gql(
        """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
          ... on Sensor { sensorState { status } } } }""",
        {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
               "sensorName": SENSOR}},
    )  # fmt: skip
    return str(data["sensorOrError"]["sensorState"]["status"])


def _aoi_partitions(dep: Deployment) -> list[str]:
    data = dep.gql(
        """query($sel: RepositorySelector!) { partitionSetsOrError(repositorySelector: $sel,
          pipelineName: "monthly_composite_job") { ... on PartitionSets { results { name } } } }""",
        {"sel": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
    )
    assert data["partitionSetsOrError"]["results"], data
    out = subprocess.run(
        [str(BIN / "rgb-assets"), "aoi", "list"], env=dep.env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    return sorted(line.split("\t")[0] for line in lines if "no Dagster partition" not in line)


def _runs(dep: Deployment) -> dict[str, str]:
    data = dep.gql("{ runsOrError { ... on Runs { results { runId status } } } }")
    return {r["runId"]: r["status"] for r in data["runsOrError"]["results"]}


def test_run_sensor_tick_and_restart(deployment: Deployment) -> None:
    dep = deployment
    added = subprocess.run(
        [str(BIN / "rgb-assets"), "aoi", "add", AOI, str(SAMPLE_AOI)],
        env=dep.env, capture_output=True, text=True,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    # A partition run, queued by the webserver and launched by the daemon, succeeds.
    client = DagsterGraphQLClient("127.0.0.1", port_number=dep.webserver_port, timeout=60)
    t0 = time.monotonic()
    run_id = client.submit_job_execution(
        "monthly_composite_job",
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        run_config={},
        tags={
            "dagster/partition": f"{AOI}|2019-07-01",
            "dagster/partition/aoi": AOI,
            "dagster/partition/month": "2019-07-01",
        },
    )
    status = ""
    while time.monotonic() - t0 < 600:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"{status}\n{dep.tail('daemon')}\n{dep.tail('code-server')}"
    print(f"partition run: QUEUED -> SUCCESS in {time.monotonic() - t0:.1f} s")

    # The daemon ticks the AOI inbox sensor; its tick adds a dynamic partition.
    inbox = dep.store / "aois-inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    feature = json.loads(SAMPLE_AOI.read_text())
    feature["geometry"]["coordinates"] = [
        [[x + 0.05, y] for x, y in ring] for ring in feature["geometry"]["coordinates"]
    ]
    (inbox / f"{INBOX_AOI}.geojson").write_text(json.dumps(feature))
    started = dep.gql(
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }""",
        {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
               "sensorName": SENSOR}},
    )  # fmt: skip
    assert started["startSensor"]["__typename"] == "Sensor", started
    deadline = time.monotonic() + 120
    ticks: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        ticks = [t for t in _ticks(dep) if t["status"] in ("SUCCESS", "SKIPPED", "FAILURE")]
        if ticks:
            break
        time.sleep(2)
    assert ticks, f"no sensor tick recorded\n{dep.tail('daemon')}"
    # No run requested (SKIPPED), but the tick's result holds the partition it added.
    assert ticks[-1]["status"] in ("SUCCESS", "SKIPPED"), ticks
    added_keys = [r["partitionKeys"] for r in ticks[-1]["dynamicPartitionsRequestResults"]]
    assert added_keys == [[INBOX_AOI]], ticks
    assert sorted(_aoi_partitions(dep)) == sorted([AOI, INBOX_AOI])

    before_runs = _runs(dep)
    before_ticks = {t["id"] for t in _ticks(dep)}
    assert before_runs == {run_id: "SUCCESS"}

    # Restart webserver and daemon: everything lives in PostgreSQL.
    dep.stop("daemon")
    dep.stop("webserver")
    dep.webserver_port = _free_port()  # a fresh process, not a lingering one
    dep.start_servers()
    assert _runs(dep) == before_runs
    assert sorted(_aoi_partitions(dep)) == sorted([AOI, INBOX_AOI])
    assert before_ticks <= {t["id"] for t in _ticks(dep)}
    assert _sensor_status(dep) == "RUNNING"
    logs = dep.gql(
        """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
          events { __typename } } } }""",
        {"id": run_id},
    )["logsForRun"]["events"]
    assert sum(e["__typename"] == "MaterializationEvent" for e in logs) == len(ALL_ASSETS), logs
