"""Sensor: register AOIs from GeoJSON files dropped into an inbox folder.

The name is the file stem. Accepted files move to ``registered/``; rejected ones to
``rejected/`` next to a ``.error.txt`` naming the field and the problem, so whoever dropped the
file can see why without access to Dagster logs. Only local inboxes are watched.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from rgb_assets.config import get_settings
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.limits import Limits
from rgb_assets.core.storage import layout
from rgb_assets.partitions import aoi_partitions
from rgb_assets.resources import LimitsResource, StorageResource

MAX_FILES_PER_TICK = 100
MAX_FILE_BYTES = 5 * 1024 * 1024


def inbox_dir(storage: StorageResource) -> Path | None:
    """``RGB_ASSETS_AOI_INBOX`` or ``<storage root>/aois-inbox``; None for a remote store."""
    configured = get_settings().aoi_inbox
    if configured:
        return Path(configured)
    store = storage.store()
    return store.local_path(layout.AOI_INBOX) if store.is_local else None


def _move(src: Path, dest_dir: Path) -> Path:
    """Move without overwriting an earlier file of the same name (keep both for the record)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if dest.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        dest = dest_dir / f"{src.stem}.{stamp}{src.suffix}"
    shutil.move(str(src), dest)
    return dest


def process_inbox(
    inbox: Path, storage: StorageResource, limits: Limits | None = None
) -> tuple[list[str], list[str]]:
    """Register every ``*.geojson`` in ``inbox`` within ``limits``; returns (registered names,
    rejection messages)."""
    registry = storage.aois()
    registered: list[str] = []
    rejected: list[str] = []
    for path in sorted(inbox.glob("*.geojson"))[:MAX_FILES_PER_TICK]:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise InputError("file", f"is larger than {MAX_FILE_BYTES} bytes")
            aoi, _ = registry.add(path.stem, path.read_text(encoding="utf-8"), limits=limits)
        except (InputError, UnicodeDecodeError, OSError) as e:
            field, problem = (e.field, e.problem) if isinstance(e, InputError) else ("file", str(e))
            dest = _move(path, inbox / "rejected")
            dest.with_name(dest.name + ".error.txt").write_text(f"{field}: {problem}\n")
            rejected.append(f"{path.name}: {field}: {problem}")
            continue
        _move(path, inbox / "registered")
        registered.append(aoi.name)
    return registered, rejected


@sensor(
    name="aoi_files_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description=__doc__,
)
def aoi_files_sensor(
    context: SensorEvaluationContext, storage: StorageResource, limits: LimitsResource
) -> SensorResult:
    inbox = inbox_dir(storage)
    if inbox is None:
        return SensorResult(skip_reason="storage is remote; set RGB_ASSETS_AOI_INBOX")
    if not inbox.is_dir():
        inbox.mkdir(parents=True, exist_ok=True)
        return SensorResult(skip_reason=f"inbox {inbox} created, empty")
    registered, rejected = process_inbox(inbox, storage, limits.limits())
    for msg in rejected:
        context.log.warning(f"rejected AOI file {msg}")
    missing = [
        n for n in registered if not context.instance.has_dynamic_partition(aoi_partitions.name, n)
    ]
    if not missing:
        reason = f"{len(registered)} registered, {len(rejected)} rejected, no new partitions"
        return SensorResult(skip_reason=reason)
    return SensorResult(
        dynamic_partitions_requests=[AddDynamicPartitionsRequest(aoi_partitions.name, missing)]
    )
