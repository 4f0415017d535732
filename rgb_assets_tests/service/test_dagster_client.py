"""The request API against a real Dagster webserver (in-process, queued runs never execute).

The webserver serves this code location over real HTTP GraphQL; its instance uses the
``QueuedRunCoordinator`` with no daemon, so launched runs stay QUEUED and the tests can observe
exactly which runs a request launched, then fail, cancel or delete them on the real instance.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from fastapi.testclient import TestClient

from rgb_assets.aois import remove_aoi
from rgb_assets.config import Settings
from rgb_assets.partitions import aoi_partitions
from rgb_assets.resources import StorageResource
from rgb_assets.service.app import create_app
from rgb_assets_tests.servers.graphql_proxy import GraphQLProxy

REPO = Path(__file__).resolve().parents[2]
QUEUED_INSTANCE = """telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
"""


def _square(x0: float) -> dict[str, Any]:
    return {
        "type": "Polygon",
        "coordinates": [
            [[x0, 45.201], [x0 + 0.01, 45.201], [x0 + 0.01, 45.209], [x0, 45.209], [x0, 45.201]]
        ],
    }


@dataclass
class Webserver:
    graphql_url: str
    instance: DagsterInstance


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    import uvicorn
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster_webserver.app import create_app_from_workspace_process_context

    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(QUEUED_INSTANCE)
    instance = DagsterInstance.from_config(str(home))
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="rgb_assets.definitions", working_directory=os.getcwd()),
        location_name="rgb_assets",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin])) as ctx:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        app = create_app_from_workspace_process_context(ctx)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.started, "in-process Dagster webserver did not start"
        try:
            yield Webserver(f"http://127.0.0.1:{port}/graphql", instance)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            instance.dispose()


@pytest.fixture
def storage(tmp_path: Path) -> StorageResource:
    return StorageResource(root=str(tmp_path / "store"))


def settings_for(graphql_url: str, storage: StorageResource) -> Settings:
    return Settings(
        dagster_graphql=graphql_url,
        storage_root=storage.root,
        stac_url=str(Path(storage.root).parent / "unused"),
        collection="sentinel-2-l2a",
    )


@pytest.fixture
def client(webserver: Webserver, storage: StorageResource) -> TestClient:
    return TestClient(create_app(settings_for(webserver.graphql_url, storage)))


def _runs(instance: DagsterInstance, aoi: str) -> dict[str, DagsterRunStatus]:
    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/partition/aoi": aoi}))
    return {r.run_id: r.status for r in runs}


def test_post_launches_once_and_repeat_returns_same_request(
    client: TestClient, webserver: Webserver
) -> None:
    body = {"aoi": _square(10.0), "toi": "2019-06-01/2019-08-31"}
    r = client.post("/requests", json=body)
    assert r.status_code == 202, r.text
    first = r.json()
    aoi = first["aoi"]
    assert first["created"] is True and first["months"] == ["2019-06", "2019-07", "2019-08"]
    run_ids = [x["run_id"] for x in first["runs"]]
    assert set(_runs(webserver.instance, aoi)) == set(run_ids)
    assert webserver.instance.has_dynamic_partition(aoi_partitions.name, aoi)

    status = client.get(f"/requests/{first['request_id']}").json()
    assert status["status"] == "running"
    assert {x["status"] for x in status["runs"]} == {"QUEUED"}

    # The same months written as datetimes: same request, nothing launched.
    again = client.post(
        "/requests", json={**body, "toi": "2019-06-01T00:00:00Z/2019-08-31T23:59:59Z"}
    )
    assert again.status_code == 202, again.text
    assert again.json()["request_id"] == first["request_id"]
    assert again.json()["created"] is False
    assert [x["run_id"] for x in again.json()["runs"]] == run_ids
    assert set(_runs(webserver.instance, aoi)) == set(run_ids)


def test_repeat_after_aoi_removed_reregisters_and_relaunches_ended_runs(
    client: TestClient, webserver: Webserver, storage: StorageResource
) -> None:
    instance = webserver.instance
    body = {"aoi": _square(11.0), "toi": "2019-06-01/2019-09-30", "name": "removed-meanwhile"}
    first = client.post("/requests", json=body).json()
    aoi = first["aoi"]
    assert aoi == "removed-meanwhile"
    failed, canceled, deleted, kept = (x["run_id"] for x in first["runs"])
    instance.report_run_failed(instance.get_run_by_id(failed))
    instance.report_run_canceled(instance.get_run_by_id(canceled))
    instance.delete_run(deleted)
    remove_aoi(storage.aois(), instance, aoi)
    assert aoi not in storage.aois().names()
    assert not instance.has_dynamic_partition(aoi_partitions.name, aoi)

    r = client.post("/requests", json=body)
    assert r.status_code == 202, r.text
    again = r.json()
    assert again["request_id"] == first["request_id"] and again["created"] is False
    assert aoi in storage.aois().names()
    assert instance.has_dynamic_partition(aoi_partitions.name, aoi)
    new_ids = [x["run_id"] for x in again["runs"]]
    assert new_ids[3] == kept
    assert not {failed, canceled, deleted} & set(new_ids[:3])
    runs = _runs(instance, aoi)
    assert all(runs[i] == DagsterRunStatus.QUEUED for i in new_ids)
    # The failed and canceled runs stay in the history (the deleted one is gone).
    assert runs[failed] == DagsterRunStatus.FAILURE
    assert runs[canceled] == DagsterRunStatus.CANCELED
    assert len(runs) == 4 - 1 + 3
    # GET reads the relaunched runs from the stored record.
    status = client.get(f"/requests/{first['request_id']}").json()
    assert [x["run_id"] for x in status["runs"]] == new_ids


def test_identical_concurrent_posts_launch_once(client: TestClient, webserver: Webserver) -> None:
    body = {"aoi": _square(12.0), "toi": "2019-06-01/2019-07-31"}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/requests", json=body), range(4)))
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert len({b["request_id"] for b in bodies}) == 1
    assert sorted(b["created"] for b in bodies) == [False, False, False, True]
    assert len({tuple(x["run_id"] for x in b["runs"]) for b in bodies}) == 1
    assert len(_runs(webserver.instance, bodies[0]["aoi"])) == 2


def test_other_request_is_not_blocked_by_a_request_in_progress(
    client: TestClient, storage: StorageResource
) -> None:
    # Hold the guard of request A as a submit in progress would (file lock, like another
    # process); a different request B must still complete.
    first = client.post("/requests", json={"aoi": _square(13.0), "toi": "2019-06-01/2019-06-30"})
    rid = first.json()["request_id"]
    store = storage.store()
    body_a = {"aoi": _square(13.0), "toi": "2019-06-01/2019-06-30"}
    with ThreadPoolExecutor(1) as pool:
        with store.lock(f"requests/.{rid}.lock"):
            blocked = pool.submit(client.post, "/requests", json=body_a)
            other = client.post(
                "/requests", json={"aoi": _square(14.0), "toi": "2019-06-01/2019-06-30"}
            )
            assert other.status_code == 202, other.text
            assert not blocked.done()
        assert blocked.result(timeout=60).json()["request_id"] == rid


def test_graphql_down_is_503(storage: StorageResource) -> None:
    app = create_app(settings_for("http://127.0.0.1:9/graphql", storage))
    body = {"aoi": _square(15.0), "toi": "2019-06-01/2019-06-30"}
    r = TestClient(app).post("/requests", json=body)
    assert r.status_code == 503 and "unavailable" in r.text
    # The record is kept with no run ids (never a null one), so the next POST (Dagster back)
    # launches them.
    records = list((Path(storage.root) / "requests").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["runs"] == {} and "null" not in records[0].read_text()


# -- idempotent launches under lost answers (issue 13 #4) ------------------------------------


def test_launch_whose_answer_times_out_is_adopted_not_repeated(
    webserver: Webserver, storage: StorageResource
) -> None:
    """The launch reaches Dagster, its answer does not arrive in time: the request finds the
    created run by its tag instead of answering 503 (or launching it again on retry)."""
    with GraphQLProxy(webserver.graphql_url, launch_delay_s=8) as proxy:
        app = create_app(settings_for(proxy.url, storage), graphql_timeout_s=5)
        body = {"aoi": _square(16.0), "toi": "2019-06-01/2019-07-31"}
        r = TestClient(app).post("/requests", json=body)
        assert r.status_code == 202, r.text
        assert proxy.held == 2  # both launch answers were lost
        runs = [x["run_id"] for x in r.json()["runs"]]
        assert all(runs) and len(set(runs)) == 2
        assert set(_runs(webserver.instance, r.json()["aoi"])) == set(runs)
        again = TestClient(app).post("/requests", json=body)
        assert [x["run_id"] for x in again.json()["runs"]] == runs
        assert proxy.launches == 2 and len(_runs(webserver.instance, r.json()["aoi"])) == 2


def test_fifty_concurrent_posts_launch_each_partition_once(
    webserver: Webserver, storage: StorageResource
) -> None:
    """50 POSTs at once (5 requests x 10 copies, 2 months each), every third launch answer
    lost past the client's timeout: each partition is launched exactly once, every answer
    is 202 with the same non-null run ids per request, and a round of retries adds nothing."""
    # Generous timeouts: 50 threads share this process with the webserver; only the held
    # launch answers should time out, not a slow addDynamicPartition on a loaded machine.
    with GraphQLProxy(webserver.graphql_url, launch_delay_s=25, hold_every=3) as proxy:
        app = create_app(settings_for(proxy.url, storage), graphql_timeout_s=20)
        client = TestClient(app)
        bodies = [{"aoi": _square(20.0 + i % 5), "toi": "2019-06-01/2019-07-31"} for i in range(50)]
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda b: client.post("/requests", json=b), bodies))
        assert [a.status_code for a in answers] == [202] * 50, [
            a.text for a in answers if a.status_code != 202
        ]
        by_request: dict[str, set[tuple[str, ...]]] = {}
        for a in answers:
            ids = tuple(x["run_id"] for x in a.json()["runs"])
            assert all(ids) and len(ids) == 2
            by_request.setdefault(a.json()["request_id"], set()).add(ids)
        assert len(by_request) == 5 and all(len(v) == 1 for v in by_request.values())
        assert proxy.launches == 10 and proxy.held >= 3
        aois = {a.json()["aoi"] for a in answers}
        assert sum(len(_runs(webserver.instance, aoi)) for aoi in aois) == 10
        with ThreadPoolExecutor(10) as pool:
            retries = list(pool.map(lambda b: client.post("/requests", json=b), bodies[:10]))
        assert all(a.status_code == 202 for a in retries)
        assert proxy.launches == 10
        assert sum(len(_runs(webserver.instance, aoi)) for aoi in aois) == 10


def test_get_answers_run_links_failures_products_and_list(
    client: TestClient, webserver: Webserver, storage: StorageResource, sample_dir: Path
) -> None:
    """GET /requests/{id}: the run and its page in the Dagster UI, the failed step and error
    of a failed run, the products over HTTP for a succeeded one; GET /requests lists it."""
    from dagster import DagsterEvent, DagsterEventType
    from dagster._core.execution.plan.objects import StepFailureData
    from dagster._utils.error import SerializableErrorInfo

    from rgb_assets.core.domain.months import Month
    from rgb_assets_tests.producer import produce_partition

    instance = webserver.instance
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    body = {"aoi": feature["geometry"], "toi": "2019-07-01/2019-08-31", "name": "answers"}
    first = client.post("/requests", json=body)
    assert first.status_code == 202, first.text
    rid = first.json()["request_id"]
    july, august = (x["run_id"] for x in first.json()["runs"])
    ui = webserver.graphql_url.removesuffix("/graphql")

    queued = client.get(f"/requests/{rid}").json()
    assert [r["run_url"] for r in queued["runs"]] == [f"{ui}/runs/{july}", f"{ui}/runs/{august}"]
    assert {r["status"] for r in queued["runs"]} == {"QUEUED"}
    assert all("links" not in r and "failure" not in r for r in queued["runs"])

    # July fails in its composite step; August succeeds and its product is published.
    run = instance.get_run_by_id(july)
    # As Dagster reports a step's exception: wrapped, the user's error as the cause.
    error = SerializableErrorInfo(
        "dagster._core.errors.DagsterExecutionStepExecutionError: "
        'Error occurred while executing op "monthly_composite":\n',
        [],
        "DagsterExecutionStepExecutionError",
        cause=SerializableErrorInfo("ValueError: reflectance out of range\n", [], "ValueError"),
    )
    instance.report_dagster_event(
        DagsterEvent(
            DagsterEventType.STEP_FAILURE.value,
            run.job_name,
            step_key="monthly_composite",
            event_specific_data=StepFailureData(error=error, user_failure_data=None),
            message="step failed",
        ),
        july,
    )
    instance.report_run_failed(run)
    produce_partition(sample_dir, "answers", Month(2019, 8), storage.store())
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.RUN_SUCCESS.value, run.job_name, message="done"), august
    )

    answer = client.get(f"/requests/{rid}").json()
    assert answer["status"] == "failed"
    failed, done = answer["runs"]
    assert failed["status"] == "FAILURE" and "links" not in failed
    assert failed["failure"] == {
        "step": "monthly_composite",
        "message": "ValueError: reflectance out of range",
    }
    assert done["status"] == "SUCCESS" and "failure" not in done
    # The run's events hold no composite materialization (reported by hand here): no outcome.
    assert "outcome" not in done
    links = done["links"]
    assert all(v.startswith("http://testserver/") for v in links.values()), links
    assert links["viewer"] == "http://testserver/map?aoi=answers&month=2019-08"
    assert done["items"] == [links["item"]]
    item = client.get(links["item"])
    assert item.status_code == 200 and item.json()["id"] == "answers_2019-08_sentinel-2-l2a"
    assert client.get(links["thumbnail"]).content[:4] == b"\x89PNG"
    assert client.get(links["cog"]).status_code == 200
    tile = links["tiles"].replace("{z}/{x}/{y}", "13/9196/5858")
    assert client.get(tile).status_code in (200, 404)  # a tile URL the tiler answers

    listed = client.get("/requests").json()
    mine = [r for r in listed if r["request_id"] == rid]
    assert mine == [
        {
            "request_id": rid,
            "aoi": "answers",
            "toi": "2019-07-01/2019-08-31",
            "months": ["2019-07", "2019-08"],
            "created": mine[0]["created"],
            "url": f"http://testserver/requests/{rid}",
        }
    ]
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"RequestStatus", "RunState", "ProductLinks", "RunFailure", "Health"} <= set(schema)


def test_health_reports_whether_dagster_answers(
    client: TestClient, storage: StorageResource
) -> None:
    ok = client.get("/health").json()
    assert ok["status"] == "ok" and ok["dagster"]["graphql"] == "ok"
    assert "version" in ok["dagster"]
    down = create_app(settings_for("http://127.0.0.1:9/graphql", storage))
    answer = TestClient(down).get("/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "degraded"
    assert answer.json()["dagster"]["graphql"] == "unreachable"
    assert "unavailable" in answer.json()["dagster"]["error"]
