"""The Compose stack, built and run for real: docker/compose.yaml on host networking.

Builds the images on this machine (from a debootstrapped Debian base: nothing can be pulled),
brings up PostgreSQL, SeaweedFS, stac-fastapi-pgstac, a Dask scheduler and two workers, the
Dagster code server, webserver and daemon and the request API, loads the sample catalog into
the stack's pgstac as its STAC source, then: registers an AOI with ``rgb-assets aoi add``
inside the stack, launches one partition through the stack's GraphQL and one through its
REST service, and checks that both ran on the stack's Dask workers, wrote to its S3 bucket and
published to its STAC API. Slow (minutes cold, mostly the image build); never skipped.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
import yaml
from dagster_graphql import DagsterGraphQLClient

from rgb_assets.cluster import WORKER_MALLOC
from rgb_assets_tests.deploy.docker_env import COMPOSE, docker_engine, ensure_base_image, run
from rgb_assets_tests.deploy.stack import (
    DOCKER_DIR,
    REPO,
    SERVERS,
    Stack,
    build_images,
    compose_env,
    compose_stack,
)
from rgb_assets_tests.servers.pgstac import PgStacServer

pytestmark = [
    pytest.mark.live,
    # The partition tags Dagster itself sets (dagster/partition/aoi) fail its new tag-key check.
    pytest.mark.filterwarnings("ignore:Non-compliant tag keys:DeprecationWarning"),
]

SAMPLE = REPO / "data" / "sample"
SAMPLE_AOI = REPO / "data" / "sample_aoi.geojson"
AOI = "carpathians-sample"
LOCATION = "rgb_assets"
JOB = "monthly_composite_job"
DERIVED_COLLECTION = "sentinel-2-l2a-monthly-rgb"
BUCKET_ROOT = "rgb-assets/store"
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (SAMPLE / "collection.json").exists():
        pytest.fail(f"sample catalog missing at {SAMPLE}: run `make sample-data`")
    workdir = tmp_path_factory.mktemp("compose-stack")
    timings: dict[str, float] = {}
    with docker_engine(workdir):
        t0 = time.monotonic()
        base = ensure_base_image()
        timings["base image"] = time.monotonic() - t0
        t0 = time.monotonic()
        build_images(base)
        timings["image builds"] = time.monotonic() - t0
        with compose_stack(workdir, SAMPLE) as running:
            running.timings.update(timings)
            yield running
            print(f"stack timings (s): { {k: round(v, 1) for k, v in running.timings.items()} }")


def _gql(stack: Stack, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.url('WEBSERVER_PORT')}/graphql",
        json={"query": query, "variables": variables or {}},
        timeout=60,
    )
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


def _wait_run(stack: Stack, client: DagsterGraphQLClient, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = ""
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(3)
    assert status == "SUCCESS", f"run {run_id}: {status}\n{stack.logs()}"
    return status


def _composite_metadata(stack: Stack, run_id: str) -> dict[str, Any]:
    """The metadata of the run's monthly_composite materialization, by label."""
    data = _gql(
        stack,
        """query($runId: ID!) { logsForRun(runId: $runId, limit: 5000) {
          __typename ... on EventConnection { events { __typename
            ... on MaterializationEvent { assetKey { path } metadataEntries { label
              ... on UrlMetadataEntry { url } ... on IntMetadataEntry { intValue }
              ... on TextMetadataEntry { text } ... on FloatMetadataEntry { floatValue }
            } } } } } }""",
        {"runId": run_id},
    )
    events = data["logsForRun"]["events"]
    found = [
        e
        for e in events
        if e["__typename"] == "MaterializationEvent"
        and e["assetKey"]["path"] == ["monthly_composite"]
    ]
    assert len(found) == 1, [e["__typename"] for e in events]
    return {
        m["label"]: next((m[k] for k in ("url", "intValue", "text", "floatValue") if k in m), None)
        for m in found[0]["metadataEntries"]
    }


def _load_source(stack: Stack) -> None:
    """The sample's June-August 2019 scenes as the stack's STAC source (its own pgstac)."""
    env = stack.env
    dsn = (
        f"postgresql://postgres:{env['POSTGRES_PASSWORD']}@127.0.0.1:{env['POSTGRES_PORT']}/pgstac"
    )
    PgStacServer(url=stack.url("STAC_API_PORT"), dsn=dsn).load_sample(
        SAMPLE / "collection.json", ["201907", "201908"]
    )


def test_stack_runs_a_partition_end_to_end(stack: Stack) -> None:
    _load_source(stack)

    # Register the AOI inside the stack (the code server's container, same instance + store).
    added = stack.compose(
        "exec", "-T", "user-code",
        "rgb-assets", "aoi", "add", AOI, "/opt/rgb-assets/data/sample_aoi.geojson",
    )  # fmt: skip
    print(added.stdout.strip())
    listed = stack.compose("exec", "-T", "dagster-webserver", "rgb-assets", "aoi", "list")
    assert listed.stdout.startswith(AOI) and "no Dagster partition" not in listed.stdout

    # One partition through the stack's GraphQL.
    client = DagsterGraphQLClient("127.0.0.1", port_number=stack.port("WEBSERVER_PORT"))
    t0 = time.monotonic()
    gql_run = client.submit_job_execution(
        JOB,
        repository_location_name=LOCATION,
        repository_name="__repository__",
        run_config={},
        tags={
            "dagster/partition": f"{AOI}|2019-07-01",
            "dagster/partition/aoi": AOI,
            "dagster/partition/month": "2019-07-01",
        },
    )
    _wait_run(stack, client, gql_run)
    stack.timings["graphql run"] = time.monotonic() - t0

    # One request (August) through the stack's REST service.
    t0 = time.monotonic()
    rest = stack.url("REST_PORT")
    body = {
        "aoi": json.loads(SAMPLE_AOI.read_text()),
        "toi": "2019-08-01/2019-08-31",
        "bands": ["red", "green", "blue"],
        "collection": "sentinel-2-l2a",
    }
    accepted = httpx.post(f"{rest}/requests", json=body, timeout=120)
    assert accepted.status_code == 202, accepted.text
    request = accepted.json()
    assert request["aoi"] == AOI and len(request["runs"]) == 1, request
    rest_run = request["runs"][0]["run_id"]
    status: dict[str, Any] = {}
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = httpx.get(f"{rest}/requests/{request['request_id']}", timeout=60).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(3)
    assert status.get("status") == "done", f"{status}\n{stack.logs()}"
    _wait_run(stack, client, rest_run)
    stack.timings["rest run"] = time.monotonic() - t0
    rest_items = [href for run in status["runs"] for href in run["items"]]
    # The answer links the derived item over the service's HTTP (``/store/...``), read from
    # the stack's bucket: a STAC item of the requested month whose assets are in the bucket.
    # A run that found no scene succeeds as "no data": the answer says so per run.
    assert [run.get("outcome") for run in status["runs"]] == ["published"], json.dumps(status)
    assert len(rest_items) == 1 and rest_items[0].startswith(f"{rest}/store/"), json.dumps(status)
    served = httpx.get(rest_items[0], timeout=60)
    assert served.status_code == 200, served.text
    rest_item = served.json()
    assert rest_item["type"] == "Feature", rest_item
    assert rest_item["properties"]["start_datetime"].startswith("2019-08"), rest_item

    # Both ran on the stack's Dask cluster: its scheduler's dashboard, its two workers.
    dashboard = stack.url("DASK_DASHBOARD_PORT")
    table = httpx.get(f"{dashboard}/info/main/workers.html", timeout=30).text
    cells = re.findall(r"<td>\s*([^<]*?)\s*</td>", table)
    assert {"dask-worker-1", "dask-worker-2"} <= set(cells), cells
    # The workers preload the code location and run without Dask's profiler, with the malloc
    # settings of rgb_assets.cluster.WORKER_MALLOC in their environment from the start.
    probe = stack.compose(
        "exec", "-T", "dask-worker-1", "python", "-c",
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "from distributed import Client\n"
        "with Client(os.environ['RGB_ASSETS_DASK_SCHEDULER'], timeout=60) as c:\n"
        "    print(json.dumps(c.run(lambda dask_worker: ["
        "'profile' in dask_worker.periodic_callbacks, 'rgb_assets.definitions' in sys.modules, "
        "{k: v for k, _, v in (e.partition('=') for e in "
        "Path('/proc/self/environ').read_text(errors='replace').split(chr(0))) "
        "if k.startswith('MALLOC_')}])))",
    )  # fmt: skip
    workers = json.loads(probe.stdout.strip().splitlines()[-1])
    assert len(workers) == 2 and all(w[:2] == [False, True] for w in workers.values()), workers
    for *_, malloc in workers.values():
        assert {k: malloc.get(k) for k in WORKER_MALLOC} == WORKER_MALLOC, malloc
    for run_id in (gql_run, rest_run):
        meta = _composite_metadata(stack, run_id)
        assert str(meta["dask_dashboard"]).startswith(f"{dashboard}/"), meta
        assert meta["dask_workers_total"] == 2, meta
        assert meta["dask_workers_used"] >= 1, meta

    # The derived items, found through a pystac-client search of the stack's STAC API, and
    # every file they point to, in the stack's bucket.
    from pystac_client import Client

    api = Client.open(stack.url("STAC_API_PORT"))
    found = list(
        api.search(
            collections=[DERIVED_COLLECTION],
            intersects=json.loads(SAMPLE_AOI.read_text())["geometry"],
            datetime="2019-07-01/2019-08-31",
        ).items()
    )
    # A monthly item has datetime null and start_datetime/end_datetime spanning the month.
    months = sorted(i.properties["start_datetime"][:7] for i in found)
    assert months == ["2019-07", "2019-08"], found
    fs = _s3(stack)
    for item in found:
        hrefs = {key: a.href for key, a in item.assets.items()}
        assert hrefs and all(h.startswith(f"s3://{BUCKET_ROOT}/") for h in hrefs.values()), hrefs
        assert {"data", "visual", "thumbnail", "zarr"} <= set(hrefs), hrefs
        for key, href in hrefs.items():
            path = href.removeprefix("s3://").rstrip("/")
            assert fs.exists(path), href
            if key != "zarr":  # a folder
                assert fs.size(path) > 1_000, href
        # Whole composites: every tile the two workers computed reached the step's Zarr, so
        # a pixel with clear observations has a value in every band (no NaN holes).
        cog = fs.cat_file(hrefs["data"].removeprefix("s3://"))
        with rasterio.MemoryFile(cog) as memory, memory.open() as src:
            data = src.read()
        clear = data[-1] > 0
        assert clear.mean() > 0.5, (item.id, clear.mean())
        assert np.isfinite(data[:-1][:, clear]).all(), item.id
    print(f"stack timings (s): { {k: round(v, 1) for k, v in stack.timings.items()} }")


def _s3(stack: Stack):  # type: ignore[no-untyped-def]
    import s3fs

    return s3fs.S3FileSystem(
        key=stack.env["AWS_ACCESS_KEY_ID"],
        secret=stack.env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": stack.url("S3_PORT")},
    )


def test_compose_config_is_valid(tmp_path: Path) -> None:
    """``docker-compose config`` accepts compose.yaml with the documented .env.example, and
    refuses to run without the secrets (no defaults for them)."""
    compose = str(DOCKER_DIR / "compose.yaml")
    config = run(
        [COMPOSE, "--env-file", str(DOCKER_DIR / ".env.example"), "-f", compose, "config"],
        env=compose_env(tmp_path),
    ).stdout
    services = yaml.safe_load(config)["services"]
    assert set(SERVERS) <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            # "127.0.0.1:3000:3000" (compose 1.29) or the long form with host_ip
            host = port.get("host_ip", "") if isinstance(port, dict) else str(port)
            assert host.startswith("127.0.0.1"), (name, port)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = subprocess.run(
        [COMPOSE, "--env-file", str(empty), "-f", compose, "config"],
        capture_output=True,
        text=True,
        env=compose_env(tmp_path),
        timeout=120,
    )
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr, refused.stderr
