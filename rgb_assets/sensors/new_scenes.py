"""Sensor: launch AOI × month partitions when the STAC source publishes scenes newer than seen.

Each tick looks at a bounded slice of the registered AOIs (round-robin), searches the last few
complete months for each, and requests a run only for partitions whose newest ``updated`` (or,
lacking that, ``datetime``) moved past the cursor. The first time an AOI × month is seen, every
scene there is new, so a newly registered AOI gets its recent months. The run key embeds that
timestamp, so a re-evaluated tick never launches the same work twice.

Bounded work: at most ``RGB_ASSETS_SENSOR_AOIS_PER_TICK`` AOIs per tick, and no search starts
once ``TICK_BUDGET_S`` is spent, so a tick ends well inside Dagster's 60 s limit. A source that
cannot be opened or searched ends the tick early (logged, cursor kept) instead of timing out
once per AOI.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pystac
from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from rgb_assets.config import get_settings
from rgb_assets.core.domain.errors import InputError, StacSourceError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.source import SearchRequest, StacSource, open_source
from rgb_assets.jobs import monthly_composite_job
from rgb_assets.partitions import aoi_partitions, check_month_in_range, partition_key
from rgb_assets.resources import StacSourceResource, StorageResource

# A tick must finish well inside Dagster's 60 s sensor timeout.
TICK_BUDGET_S = 40.0
SEARCH_TIMEOUT_S = 10.0


@dataclass
class ScenesCursor:
    """Round-robin position plus the newest timestamp seen per AOI and month."""

    pos: int = 0
    seen: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> ScenesCursor:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            return cls(int(raw.get("pos", 0)), {k: dict(v) for k, v in raw["seen"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls()  # an unreadable cursor restarts the scan; run keys still dedupe

    def dumps(self) -> str:
        return json.dumps({"pos": self.pos, "seen": self.seen}, sort_keys=True)


# Cursor stamps taken from ``datetime`` (items without ``updated``) carry this prefix: the
# server-side ``updated >`` filter would drop every item without ``updated``, so such months are
# filtered client side only.
DATETIME_STAMP = "datetime:"


def item_stamp(item: pystac.Item) -> str:
    """The item's ``updated`` (else ``datetime``) as normalized UTC ISO text, comparable as str."""
    raw = item.properties.get("updated") or item.properties.get("datetime")
    when = pystac.utils.str_to_datetime(raw) if raw else item.datetime
    if when is None:
        return ""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def sensor_months(now: datetime | None = None) -> list[Month]:
    """Complete months to watch: the reference month and the ones before it.

    ``RGB_ASSETS_SENSOR_LOOKBACK_MONTHS`` (default 2: current and previous) sets how many;
    ``RGB_ASSETS_SENSOR_REFERENCE_MONTH`` (YYYY-MM) pins the reference (tests, reprocessing).
    Months outside the partition range (the current, incomplete one) are left for later ticks.
    """
    settings = get_settings()
    ref_text = settings.sensor_reference_month
    ref = Month.parse(ref_text) if ref_text else Month.of(now or datetime.now(UTC))
    n = settings.sensor_lookback_months
    months, cur = [], ref
    for _ in range(n):
        months.append(cur)
        cur = Month(cur.year - (cur.month == 1), 12 if cur.month == 1 else cur.month - 1)
    out = []
    for m in reversed(months):
        try:
            out.append(check_month_in_range(m))
        except InputError:
            continue
    return out


def _open(stac: StacSourceResource) -> StacSource:
    if stac.url.startswith(("http://", "https://")):
        return open_source(stac.url, timeout=min(stac.timeout_s, SEARCH_TIMEOUT_S), max_retries=1)
    return open_source(stac.url)


def cursor_stamp(items: list[pystac.Item]) -> str:
    """The newest stamp of ``items`` as kept in the cursor (prefixed when not ``updated``)."""
    newest = max(items, key=item_stamp)
    stamp = item_stamp(newest)
    return stamp if newest.properties.get("updated") else DATETIME_STAMP + stamp


@dataclass
class _Searcher:
    """Searches for one tick: server-side ``updated`` filter until the server rejects it."""

    source: StacSource
    server_filter: bool = True

    def newer(self, request: SearchRequest, seen: str | None) -> list[pystac.Item]:
        """Items newer than ``seen``; filtered server side when possible, always client side.

        Raises StacSourceError when the source fails even without the filter (an outage).
        """
        stamp = seen.removeprefix(DATETIME_STAMP) if seen else None
        items: list[pystac.Item] | None = None
        if seen and self.server_filter and not seen.startswith(DATETIME_STAMP):
            try:
                items = self.source.search(
                    SearchRequest(
                        request.collection_id, request.aoi, request.month, updated_after=seen
                    )
                )
            except StacSourceError:
                # No `updated` queryable, or the source is down: the plain search tells which.
                self.server_filter = False
        if items is None:
            items = self.source.search(request)
        return [it for it in items if not stamp or item_stamp(it) > stamp]


def evaluate_new_scenes(
    context: SensorEvaluationContext, stac: StacSourceResource, storage: StorageResource
) -> SensorResult:
    """The sensor body, separate so it can be reused with other resources."""
    started = time.monotonic()
    cursor = ScenesCursor.parse(context.cursor)
    registry = storage.aois()
    names = sorted(registry.names())
    if not names:
        return SensorResult(skip_reason="no AOIs registered", cursor=cursor.dumps())
    months = sensor_months()
    if not months:
        return SensorResult(skip_reason="no complete month in the lookback", cursor=cursor.dumps())
    try:
        source = _open(stac)
    except StacSourceError as e:
        context.log.warning(f"STAC source unavailable, skipping tick: {e}")
        return SensorResult(skip_reason=str(e), cursor=cursor.dumps())
    spec = stac.spec()
    collection_id = source.collection_id(spec)
    per_tick = get_settings().sensor_aois_per_tick
    start = cursor.pos % len(names)
    batch = [names[(start + i) % len(names)] for i in range(min(per_tick, len(names)))]

    # Forget AOIs that were removed and months that left the lookback.
    keep = {m.key for m in months}
    cursor.seen = {
        n: {k: v for k, v in by_month.items() if k in keep}
        for n, by_month in cursor.seen.items()
        if n in names
    }
    searcher = _Searcher(source)
    runs: list[RunRequest] = []
    new_partitions: list[str] = []
    done = 0
    outage: StacSourceError | None = None
    for name in batch:
        if time.monotonic() - started > TICK_BUDGET_S:
            context.log.info(f"tick budget spent after {done} AOIs; continuing next tick")
            break
        try:
            aoi = registry.get(name)
        except InputError as e:
            done += 1
            context.log.warning(f"AOI {name!r} skipped: {e}")
            continue
        seen_by_month = cursor.seen.setdefault(name, {})
        found: dict[Month, list[pystac.Item]] = {}
        for month in months:
            if time.monotonic() - started > TICK_BUDGET_S:
                break
            try:
                found[month] = searcher.newer(
                    SearchRequest(collection_id, aoi, month), seen_by_month.get(month.key)
                )
            except StacSourceError as e:
                outage = e
                break
        if outage is not None or len(found) < len(months):
            break  # this AOI is retried from scratch next tick
        done += 1
        for month, items in found.items():
            if not items:
                continue
            newest = cursor_stamp(items)
            seen_by_month[month.key] = newest
            if name not in new_partitions and not context.instance.has_dynamic_partition(
                aoi_partitions.name, name
            ):
                new_partitions.append(name)
            key = partition_key(name, month)
            runs.append(
                RunRequest(
                    run_key=f"{name}|{month.partition_key}|{newest}",
                    partition_key=str(key),
                    tags={
                        "rgb_assets/trigger": "new_scenes_sensor",
                        "rgb_assets/new_items": str(len(items)),
                    },
                )
            )
    if outage is not None:
        context.log.warning(f"STAC source failing, tick ended after {done} AOIs: {outage}")
    cursor.pos = (start + done) % len(names)
    requests = [AddDynamicPartitionsRequest(aoi_partitions.name, new_partitions)]
    skip = None if runs else (str(outage) if outage is not None else "no new scenes")
    return SensorResult(
        run_requests=runs,
        cursor=cursor.dumps(),
        dynamic_partitions_requests=requests if new_partitions else None,
        skip_reason=skip,
    )


@sensor(
    name="new_scenes_sensor",
    job=monthly_composite_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description=__doc__,
)
def new_scenes_sensor(
    context: SensorEvaluationContext, stac: StacSourceResource, storage: StorageResource
) -> SensorResult:
    return evaluate_new_scenes(context, stac, storage)
