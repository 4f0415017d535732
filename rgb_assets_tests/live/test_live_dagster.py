"""End to end against a real ``dagster dev``: GraphQL launches, the request API, the new-scenes
sensor ticked by the daemon against a live pgstac, and the UI in headless Chromium. Slow
(minutes); marker ``live``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from rgb_assets.config import Settings
from rgb_assets.core.domain.months import Month
from rgb_assets.partitions import aoi_partitions, partition_key
from rgb_assets.resources import StorageResource
from rgb_assets_tests.live.conftest import (
    REPO,
    SAMPLE_COLLECTION,
    LiveDagster,
    dagster_dev,
    free_port,
)
from rgb_assets_tests.servers.pgstac import PgStacServer, pgstac_server, sample_item_rows

pytestmark = pytest.mark.live

SAMPLE_AOI = REPO / "data" / "sample_aoi.geojson"
AOI_NAME = "carpathians-sample"
LOCATION = "rgb_assets"
REPOSITORY = "__repository__"
JOB = "monthly_composite_job"
DERIVED = "catalogs/derived/sentinel-2-l2a-monthly-rgb"


def _feature() -> dict[str, Any]:
    return json.loads(SAMPLE_AOI.read_text())


def _gql(server: LiveDagster, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = httpx.post(server.graphql_url, json={"query": query, "variables": variables}, timeout=30)
    body.raise_for_status()
    data = body.json()
    assert not data.get("errors"), data
    return data["data"]


def _client(server: LiveDagster) -> DagsterGraphQLClient:
    return DagsterGraphQLClient("127.0.0.1", port_number=server.port, timeout=30)


def _wait_success(client: DagsterGraphQLClient, run_id: str, server: LiveDagster) -> float:
    t0 = time.monotonic()
    status = None
    while time.monotonic() - t0 < 300:
        status = client.get_run_status(run_id).value
        if status == "SUCCESS":
            return time.monotonic() - t0
        if status in ("FAILURE", "CANCELED"):
            pytest.fail(f"run {run_id} ended {status}:\n{server.tail()}")
        time.sleep(2)
    pytest.fail(f"run {run_id} still {status} after 300 s")


def _register_sample_aoi(server: LiveDagster) -> Any:
    """Store the sample AOI's geometry and add its partition through GraphQL (idempotent)."""
    storage = StorageResource(root=str(server.storage_root))
    aoi, _ = storage.aois().add(AOI_NAME, _feature())
    added = _gql(
        server,
        """mutation($sel: RepositorySelector!, $name: String!, $key: String!) {
          addDynamicPartition(repositorySelector: $sel, partitionsDefName: $name,
                              partitionKey: $key) { __typename } }""",
        {
            "sel": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
            "name": aoi_partitions.name,
            "key": aoi.name,
        },
    )
    kind = added["addDynamicPartition"]["__typename"]
    assert kind in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"), kind
    return aoi


def submit_partition(client: DagsterGraphQLClient, aoi: str, month: Month) -> str:
    """Launch one AOI x month as the README's GraphQL snippet does; the run id."""
    return client.submit_job_execution(
        JOB,
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        run_config={},
        tags={
            "dagster/partition": str(partition_key(aoi, month)),
            "dagster/partition/aoi": aoi,
            "dagster/partition/month": month.partition_key,
        },
    )


# The README's GraphQL snippet passes Dagster's own multi-partition tags, which
# DagsterGraphQLClient flags as non-compliant keys; the run still gets its partition.
@pytest.mark.filterwarnings("ignore:Non-compliant tag keys:DeprecationWarning")
def test_graphql_launch_one_partition(live_dagster: LiveDagster) -> None:
    aoi = _register_sample_aoi(live_dagster)

    month = Month.parse("2019-07")
    client = _client(live_dagster)
    try:
        run_id = submit_partition(client, aoi.name, month)
    except DagsterGraphQLClientError as e:
        pytest.fail(f"launch failed: {e}\n{live_dagster.tail()}")
    elapsed = _wait_success(client, run_id, live_dagster)
    print(f"partition {aoi.name}|2019-07-01 SUCCESS in {elapsed:.1f} s")
    folder = live_dagster.storage_root / DERIVED / aoi.name / "2019-07"
    items = [d / f"{d.name}.json" for d in folder.iterdir() if d.is_dir()]
    assert items and all(p.is_file() for p in items), list(folder.iterdir())
    assert json.loads(items[0].read_text())["type"] == "Feature"


@pytest.fixture
def request_api(live_dagster: LiveDagster) -> Iterator[str]:
    """The FastAPI app under uvicorn in a thread, bound to the live webserver and its store."""
    import uvicorn

    from rgb_assets.service.app import create_app

    app = create_app(
        Settings(
            dagster_graphql=live_dagster.graphql_url,
            storage_root=str(live_dagster.storage_root),
            stac_url=str(SAMPLE_COLLECTION),
            collection="sentinel-2-l2a",
        )
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _run_ids(server: LiveDagster) -> set[str]:
    data = _gql(server, "{ runsOrError { ... on Runs { results { runId } } } }", {})
    return {r["runId"] for r in data["runsOrError"]["results"]}


def test_request_api_end_to_end(live_dagster: LiveDagster, request_api: str) -> None:
    _register_sample_aoi(live_dagster)  # so the request finds the geometry under its name
    body = {
        "aoi": _feature(),
        "toi": "2019-06-01/2019-08-31",
        "bands": ["red", "green", "blue"],
        "collection": "sentinel-2-l2a",
    }
    t0 = time.monotonic()
    r = httpx.post(f"{request_api}/requests", json=body, timeout=120)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert len(accepted["runs"]) == 3 and all(x["run_id"] for x in accepted["runs"])
    assert accepted["aoi"] == AOI_NAME  # identical geometry reuses the registered AOI
    rid = accepted["request_id"]

    status: dict[str, Any] = {}
    while time.monotonic() - t0 < 600:
        status = httpx.get(f"{request_api}/requests/{rid}", timeout=60).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(5)
    assert status.get("status") == "done", f"{status}\n{live_dagster.tail()}"
    print(f"request {rid}: 3 partitions done in {time.monotonic() - t0:.1f} s")
    items = [p for run in status["runs"] for p in run["items"]]
    assert len(items) == 3 and all(p.startswith(f"{request_api}/store/") for p in items), items
    for run in status["runs"]:
        assert run["run_url"] == f"{live_dagster.url}/runs/{run['run_id']}"
        assert run["outcome"] == "published", run  # the composite step's own outcome
        links = run["links"]
        for key in ("item", "cog", "visual", "thumbnail"):
            answer = httpx.get(links[key], timeout=30)
            assert answer.status_code == 200, (key, links[key])
        assert httpx.get(links["item"], timeout=30).json()["type"] == "Feature"
        assert httpx.get(links["viewer"], timeout=30).status_code == 200

    before = _run_ids(live_dagster)
    again = httpx.post(f"{request_api}/requests", json=body, timeout=60)
    assert again.status_code == 202 and again.json()["request_id"] == rid
    assert again.json()["created"] is False
    assert [x["run_id"] for x in again.json()["runs"]] == [x["run_id"] for x in accepted["runs"]]
    assert _run_ids(live_dagster) == before


SENSOR = "new_scenes_sensor"
ELSEWHERE = {  # an AOI with no scenes in the source: must never get a run
    "type": "Polygon",
    "coordinates": [[[10.0, 50.0], [10.01, 50.0], [10.01, 50.01], [10.0, 50.01], [10.0, 50.0]]],
}


@pytest.fixture
def sensor_dagster(tmp_path: Path) -> Iterator[tuple[LiveDagster, PgStacServer]]:
    """Its own pgstac holding July and August 2019 of the sample, and a ``dagster dev`` whose
    STAC source is that API. Runs stay queued (``max_concurrent_runs: 0``): this test is about
    what the sensor launches; the other live tests prove launched runs succeed."""
    with pgstac_server(tmp_path / "pgstac") as api:
        api.load_sample(SAMPLE_COLLECTION, ["201907", "201908"])
        env = {
            "RGB_ASSETS_STAC_URL": api.url,
            "RGB_ASSETS_SENSOR_REFERENCE_MONTH": "2019-08",
            "RGB_ASSETS_SENSOR_LOOKBACK_MONTHS": "3",  # June (no scenes here), July, August
        }
        queue = "run_coordinator:\n  config:\n    max_concurrent_runs: 0\n"
        with dagster_dev(tmp_path / "dagster", env, queue) as server:
            yield server, api


def _sensor_runs(server: LiveDagster) -> dict[str, dict[str, str]]:
    """run id → tags of every run the new-scenes sensor launched."""
    data = _gql(
        server,
        """query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs {
          results { runId tags { key value } } } } }""",
        {"f": {"tags": [{"key": "dagster/sensor_name", "value": SENSOR}]}},
    )
    return {
        r["runId"]: {t["key"]: t["value"] for t in r["tags"]}
        for r in data["runsOrError"]["results"]
    }


def _ticks(server: LiveDagster) -> list[dict[str, Any]]:
    data = _gql(
        server,
        """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
          __typename ... on Sensor { sensorState { ticks(limit: 20) {
            status timestamp runIds skipReason error { message } } } } } }""",
        {
            "s": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "sensorName": SENSOR,
            }
        },
    )
    return list(data["sensorOrError"]["sensorState"]["ticks"])


def _next_tick(server: LiveDagster, after: float, timeout_s: float = 150) -> dict[str, Any]:
    """The first finished tick that started after ``after`` (epoch seconds)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = [
            t
            for t in _ticks(server)
            if t["timestamp"] > after and t["status"] in ("SUCCESS", "SKIPPED", "FAILURE")
        ]
        if done:
            tick = min(done, key=lambda t: t["timestamp"])
            assert tick["status"] != "FAILURE", f"{tick}\n{server.tail()}"
            return tick
        time.sleep(2)
    pytest.fail(f"no sensor tick after {after} within {timeout_s:.0f} s\n{server.tail()}")


def test_new_scenes_sensor_launches_exactly_the_affected_partition(
    sensor_dagster: tuple[LiveDagster, PgStacServer],
) -> None:
    """The daemon ticks the sensor against the live pgstac: the first tick launches the months
    with scenes for the AOI that has any; a scene added through the Transactions API launches
    exactly its AOI x month on the next tick; a tick with nothing new launches nothing."""
    server, api = sensor_dagster
    cli = Path(sys.executable).parent / "rgb-assets"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(server.home),
        "RGB_ASSETS_DEPLOYMENT": "demo",
        "RGB_ASSETS_STORAGE_ROOT": str(server.storage_root),
    }
    elsewhere = server.home.parent / "elsewhere.geojson"
    elsewhere.write_text(json.dumps(ELSEWHERE))
    for name, path in ((AOI_NAME, SAMPLE_AOI), ("elsewhere", elsewhere)):
        added = subprocess.run(
            [str(cli), "aoi", "add", name, str(path)], env=env, capture_output=True, text=True
        )
        assert added.returncode == 0, added.stderr

    started = _gql(
        server,
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
          __typename ... on PythonError { message } } }""",
        {
            "s": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "sensorName": SENSOR,
            }
        },
    )["startSensor"]
    assert started["__typename"] == "Sensor", started
    t0 = time.time() - 5

    first = _next_tick(server, t0)
    runs = _sensor_runs(server)
    assert sorted(first["runIds"]) == sorted(runs)
    assert sorted(tags["dagster/partition"] for tags in runs.values()) == [
        f"{AOI_NAME}|2019-07-01",
        f"{AOI_NAME}|2019-08-01",
    ]

    july = sample_item_rows(SAMPLE_COLLECTION, "201907")
    new = json.loads(json.dumps(july[-1]))
    new["id"] = "S2_L2A_RO_SAMPLE_20190720_NEW"
    new["properties"]["datetime"] = "2019-07-20T09:30:00Z"
    new["properties"]["updated"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    api.add_item(new)
    t1 = time.time()

    second = _next_tick(server, t1)
    launched = {rid: tags for rid, tags in _sensor_runs(server).items() if rid not in runs}
    assert sorted(second["runIds"]) == sorted(launched), second
    assert [tags["dagster/partition"] for tags in launched.values()] == [f"{AOI_NAME}|2019-07-01"]
    assert [tags["rgb_assets/new_items"] for tags in launched.values()] == ["1"]

    third = _next_tick(server, second["timestamp"] + 1)
    assert third["status"] == "SKIPPED" and not third["runIds"], third
    assert len(_sensor_runs(server)) == 3


def _wait_for_texts(page: Any, texts: list[str], timeout_ms: int = 60_000) -> None:
    """Wait until the rendered page text holds every name (hidden duplicates do not count)."""
    page.wait_for_function(
        "names => names.every(n => document.body.innerText.includes(n))",
        arg=texts,
        timeout=timeout_ms,
    )


def test_ui_lists_assets_and_materializes_a_partition(live_dagster: LiveDagster) -> None:
    """In headless Chromium: the global lineage lists the four assets with their partitions;
    "Materialize all" with one AOI x month selected launches a run that succeeds and fills the
    partition; the asset graph is kept as the README's screenshot."""
    from playwright.sync_api import sync_playwright

    aoi = _register_sample_aoi(live_dagster)
    month = "2019-08-01"
    shot = REPO / "docs" / "screenshots" / "asset-graph.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    names = ["raw_scenes", "raw_catalog", "monthly_composite", "derived_catalog", "aoi_timeseries"]
    before = _run_ids(live_dagster)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 900})
            # The first-visit community prompt would cover the page; groups start expanded.
            context.add_init_script(
                "localStorage.setItem('communityNux', '\"1\"');"
                "localStorage.setItem('asset-graph-open-graph-nodes-global-__GLOBAL__',"
                " JSON.stringify({expanded: 'global@global:derived,global@global:raw'}));"
            )
            page = context.new_page()
            lineage = f"{live_dagster.url}/asset-groups"
            page.goto(lineage, wait_until="networkidle", timeout=120_000)
            _wait_for_texts(page, [*names, "partitions"])

            page.get_by_role("button", name="Materialize all…").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Launch runs to materialize 5 assets").wait_for()
            page.wait_for_timeout(1000)  # the dialog's opening transition renders it twice
            dialog.get_by_text("Select a partition or create one").first.click()
            page.get_by_role("menuitem", name=aoi.name).click()
            page.keyboard.press("Escape")  # close the AOI menu, keep the dialog
            month_box = dialog.get_by_placeholder("ex: 2013-04-01", exact=False)
            month_box.fill(month)
            month_box.press("Enter")
            launch = dialog.get_by_role("button", name="Launch 1 run")
            launch.wait_for(timeout=30_000)
            launch.click()

            deadline = time.monotonic() + 60
            new: set[str] = set()
            while not new and time.monotonic() < deadline:
                time.sleep(1)
                new = _run_ids(live_dagster) - before
            assert len(new) == 1, f"expected one run launched from the UI, got {new}"
            run_id = new.pop()
            _wait_success(_client(live_dagster), run_id, live_dagster)
            tags = _gql(
                live_dagster,
                """query($id: ID!) { runOrError(runId: $id) { ... on Run {
                  tags { key value } } } }""",
                {"id": run_id},
            )["runOrError"]["tags"]
            assert {"key": "dagster/partition", "value": f"{aoi.name}|{month}"} in tags

            page.goto(lineage, wait_until="networkidle", timeout=120_000)
            _wait_for_texts(page, names)
            page.wait_for_timeout(2000)  # let the graph layout and partition health settle
            page.screenshot(path=str(shot), full_page=False)

            # The composite's thumbnail on its asset page (materialization events), with the
            # link to the map viewer of the partition.
            page.goto(
                f"{live_dagster.url}/assets/monthly_composite?view=events",
                wait_until="networkidle",
                timeout=120_000,
            )
            show = page.get_by_text("[Show Markdown]").first
            show.wait_for(timeout=120_000)
            show.click()
            dialog = page.get_by_role("dialog")
            thumbnail = dialog.locator("img[src^='data:image/png']")
            thumbnail.wait_for(timeout=30_000)
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle()
            )
            viewer = dialog.get_by_role("link", name=f"Open {aoi.name} 2019-08 in the map viewer")
            assert "/map?aoi=" in (viewer.get_attribute("href") or "")
            preview = REPO / "docs" / "screenshots" / "dagster-thumbnail.png"
            page.screenshot(path=str(preview), full_page=False)
        finally:
            browser.close()
    item_dir = live_dagster.storage_root / DERIVED / aoi.name / "2019-08"
    assert any(d.is_dir() for d in item_dir.iterdir()), "no derived item for the UI's run"
    assert shot.stat().st_size > 10_000
