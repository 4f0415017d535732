"""monthly_schedule: off by default; each tick requests the month that just closed, per AOI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    build_schedule_context,
    instance_for_test,
)

from rgb_assets.aois import register_aoi
from rgb_assets.core.domain.months import Month
from rgb_assets.definitions import defs
from rgb_assets.partitions import aoi_partitions
from rgb_assets.resources import StorageResource
from rgb_assets.schedules import monthly_schedule, previous_month


def _square(x0: float) -> dict[str, object]:
    ring = [[x0, 45.2], [x0 + 0.01, 45.2], [x0 + 0.01, 45.21], [x0, 45.21], [x0, 45.2]]
    return {"type": "Polygon", "coordinates": [ring]}


def _tick(instance: DagsterInstance, storage: StorageResource, when: datetime) -> object:
    context = build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={"storage": storage},
        repository_def=defs.get_repository_def(),
    )
    return monthly_schedule.evaluate_tick(context)


def test_stopped_by_default() -> None:
    assert monthly_schedule.default_status == DefaultScheduleStatus.STOPPED


@pytest.mark.parametrize(
    ("when", "month"),
    [
        (datetime(2020, 3, 5, 6, tzinfo=UTC), Month(2020, 2)),
        (datetime(2020, 1, 5, 6, tzinfo=UTC), Month(2019, 12)),
        (datetime(2020, 12, 31, 23, 59, tzinfo=UTC), Month(2020, 11)),
    ],
)
def test_previous_month(when: datetime, month: Month) -> None:
    assert previous_month(when) == month


def test_requests_previous_month_for_every_aoi(tmp_path: Path) -> None:
    storage = StorageResource(root=str(tmp_path / "store"))
    with instance_for_test() as instance:
        register_aoi(storage.aois(), instance, "forest", _square(22.1))
        # Registered without a partition (e.g. by hand): the schedule adds it.
        storage.aois().add("meadow", _square(23.1))
        when = datetime(2020, 1, 5, 6, tzinfo=UTC)
        first = _tick(instance, storage, when)
        again = _tick(instance, storage, when)
        assert sorted(instance.get_dynamic_partitions(aoi_partitions.name)) == [
            "forest",
            "meadow",
        ]
    requests = first.run_requests
    assert all(isinstance(r, RunRequest) for r in requests)
    assert [r.partition_key for r in requests] == ["forest|2019-12-01", "meadow|2019-12-01"]
    assert [r.run_key for r in requests] == [
        "forest|2019-12-01|monthly",
        "meadow|2019-12-01|monthly",
    ]
    assert all(r.tags["rgb_assets/trigger"] == "monthly_schedule" for r in requests)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in requests]


def test_skips_without_aois(tmp_path: Path) -> None:
    storage = StorageResource(root=str(tmp_path / "store"))
    with instance_for_test() as instance:
        result = _tick(instance, storage, datetime(2020, 1, 5, 6, tzinfo=UTC))
    assert not result.run_requests
    assert "no AOIs registered" in str(result.skip_message)
