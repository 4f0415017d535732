"""new_scenes_sensor evaluated in process against the live pgstac, through a real HTTP proxy
that can be switched down (an outage) or slowed (a slow source)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster import DagsterInstance, build_sensor_context

from rgb_assets.partitions import aoi_partitions
from rgb_assets.resources import StacSourceResource, StorageResource
from rgb_assets.sensors import new_scenes
from rgb_assets.sensors.new_scenes import ScenesCursor, new_scenes_sensor
from rgb_assets_tests.servers.pgstac import PgStacServer, sample_item_rows
from rgb_assets_tests.servers.proxy import StacApiProxy

REPO = Path(__file__).resolve().parents[2]
SAMPLE_COLLECTION = REPO / "data" / "sample" / "collection.json"
SAMPLE_AOI = REPO / "data" / "sample_aoi.geojson"


@pytest.fixture
def july_source(pgstac: PgStacServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[StacApiProxy]:
    pgstac.load_sample(SAMPLE_COLLECTION, ["201907"])
    monkeypatch.setenv("RGB_ASSETS_SENSOR_REFERENCE_MONTH", "2019-07")
    monkeypatch.setenv("RGB_ASSETS_SENSOR_LOOKBACK_MONTHS", "1")
    with StacApiProxy(pgstac.url) as proxy:
        yield proxy


def _setup(tmp_path: Path, url: str, names: list[str]) -> dict[str, Any]:
    storage = StorageResource(root=str(tmp_path / "store"))
    feature = json.loads(SAMPLE_AOI.read_text())
    for name in names:
        storage.aois().add(name, feature)
    return {"stac": StacSourceResource(url=url, collection="sentinel-2-l2a"), "storage": storage}


def _tick(instance: DagsterInstance, resources: dict[str, Any], cursor: str | None) -> Any:
    ctx = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return new_scenes_sensor(ctx)


def test_new_scene_requests_its_partition_once(july_source: StacApiProxy, tmp_path: Path) -> None:
    resources = _setup(tmp_path, july_source.url, ["aoi-a"])
    with DagsterInstance.ephemeral() as instance:
        first = _tick(instance, resources, None)
        assert [r.partition_key for r in first.run_requests] == ["aoi-a|2019-07-01"]
        # The AOI's partition did not exist yet: the sensor adds it with the runs.
        assert first.dynamic_partitions_requests[0].partition_keys == ["aoi-a"]
        assert _tick(instance, resources, first.cursor).run_requests == []

        new = sample_item_rows(SAMPLE_COLLECTION, "201907")[-1]
        new["id"] = "S2_L2A_RO_SAMPLE_20190720_SENSOR"
        new["properties"]["datetime"] = "2019-07-20T09:30:00Z"
        new["properties"]["updated"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        pgstac_url = july_source.upstream
        httpx.post(f"{pgstac_url}/collections/sentinel-2-l2a/items", json=new, timeout=30)
        second = _tick(instance, resources, first.cursor)
        assert [r.partition_key for r in second.run_requests] == ["aoi-a|2019-07-01"]
        assert second.run_requests[0].tags["rgb_assets/new_items"] == "1"
        assert second.run_requests[0].run_key != first.run_requests[0].run_key
        httpx.delete(f"{pgstac_url}/collections/sentinel-2-l2a/items/{new['id']}", timeout=30)


def test_outage_ends_the_tick_early_and_keeps_the_cursor(
    july_source: StacApiProxy, tmp_path: Path
) -> None:
    names = [f"aoi-{i}" for i in range(6)]
    resources = _setup(tmp_path, july_source.url, names)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(aoi_partitions.name, names)
        first = _tick(instance, resources, None)
        assert len(first.run_requests) == len(names)

        july_source.down = True
        before = july_source.requests
        t0 = time.monotonic()
        down = _tick(instance, resources, first.cursor)
        elapsed = time.monotonic() - t0
        assert down.run_requests == [] and down.skip_reason
        # Opening the client fails at once: no search per AOI, cursor untouched.
        assert july_source.requests - before <= 4, july_source.requests - before
        assert ScenesCursor.parse(down.cursor).seen == ScenesCursor.parse(first.cursor).seen
        assert elapsed < 30

        july_source.down = False
        assert _tick(instance, resources, down.cursor).run_requests == []


def test_outage_in_the_middle_of_a_tick(
    july_source: StacApiProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source fails after the client opened: the tick stops at the first failing AOI and
    the next tick starts there, instead of waiting out a timeout per AOI."""
    names = [f"aoi-{i}" for i in range(6)]
    resources = _setup(tmp_path, july_source.url, names)
    real_open = new_scenes._open

    def open_then_fail(stac: StacSourceResource) -> Any:
        source = real_open(stac)
        july_source.down = True  # the API goes down right after answering the landing page
        return source

    monkeypatch.setattr(new_scenes, "_open", open_then_fail)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(aoi_partitions.name, names)
        before = july_source.requests
        tick = _tick(instance, resources, None)
        assert tick.run_requests == [] and "search failed" in tick.skip_reason.skip_message
        assert july_source.requests - before <= 1 + 2 * 2  # landing page + one AOI's tries
        assert ScenesCursor.parse(tick.cursor).pos == 0

        monkeypatch.setattr(new_scenes, "_open", real_open)
        july_source.down = False
        again = _tick(instance, resources, tick.cursor)
        assert len(again.run_requests) == len(names)


def test_tick_budget_bounds_the_work_and_resumes(
    july_source: StacApiProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"aoi-{i:02d}" for i in range(8)]
    resources = _setup(tmp_path, july_source.url, names)
    monkeypatch.setattr(new_scenes, "TICK_BUDGET_S", 1.0)
    july_source.search_delay_s = 0.4
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(aoi_partitions.name, names)
        t0 = time.monotonic()
        first = _tick(instance, resources, None)
        elapsed = time.monotonic() - t0
        done = len(first.run_requests)
        assert 1 <= done < len(names)
        assert elapsed < 1.0 + 2 * 0.4 + 2.0  # the budget, one search in flight, slack
        assert ScenesCursor.parse(first.cursor).pos == done

        july_source.search_delay_s = 0.0
        rest = _tick(instance, resources, first.cursor)
        launched = {r.partition_key.split("|")[0] for r in first.run_requests + rest.run_requests}
        assert launched == set(names)
