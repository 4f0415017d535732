"""Schedules: the monthly catch-up run of the month that just closed, for every AOI.

Runs on the 5th so late-published scenes of the previous month are in the source; the
new-scenes sensor covers anything published later still.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from rgb_assets.aois import sync_partitions
from rgb_assets.core.domain.months import Month
from rgb_assets.jobs import monthly_composite_job
from rgb_assets.partitions import partition_key
from rgb_assets.resources import StorageResource


def previous_month(when: datetime) -> Month:
    m = Month.of(when)
    return Month(m.year - 1, 12) if m.month == 1 else Month(m.year, m.month - 1)


@schedule(
    name="monthly_schedule",
    cron_schedule="0 6 5 * *",
    execution_timezone="UTC",
    job=monthly_composite_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description=__doc__,
)
def monthly_schedule(
    context: ScheduleEvaluationContext, storage: StorageResource
) -> list[RunRequest] | SkipReason:
    when = context.scheduled_execution_time or datetime.now(UTC)
    month = previous_month(when)
    registry = storage.aois()
    sync_partitions(registry, context.instance)
    names = sorted(registry.names())
    if not names:
        return SkipReason("no AOIs registered")
    return [
        RunRequest(
            run_key=f"{name}|{month.partition_key}|monthly",
            partition_key=str(partition_key(name, month)),
            tags={
                "rgb_assets/trigger": "monthly_schedule",
            },
        )
        for name in names
    ]
