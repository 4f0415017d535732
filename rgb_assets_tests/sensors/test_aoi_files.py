"""AOI inbox sensor: valid files are registered and get a partition, invalid ones are rejected
with their reason next to them, and evaluating again changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from rgb_assets.partitions import aoi_partitions
from rgb_assets.resources import LimitsResource, StorageResource
from rgb_assets.sensors.aoi_files import aoi_files_sensor, process_inbox

SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[22.146, 45.201], [22.158, 45.201], [22.158, 45.209], [22.146, 45.209], [22.146, 45.201]]
    ],
}
BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StorageResource:
    monkeypatch.delenv("RGB_ASSETS_AOI_INBOX", raising=False)
    return StorageResource(root=str(tmp_path / "store"))


def _inbox(storage: StorageResource) -> Path:
    inbox = Path(storage.root) / "aois-inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    return inbox


def _evaluate(instance: DagsterInstance, storage: StorageResource) -> SensorResult:
    context = build_sensor_context(
        instance=instance, resources={"storage": storage, "limits": LimitsResource()}
    )
    result = aoi_files_sensor(context)
    assert isinstance(result, SensorResult)
    return result


def test_process_inbox_registers_and_rejects(storage: StorageResource) -> None:
    inbox = _inbox(storage)
    (inbox / "forest.geojson").write_text(json.dumps(SQUARE))
    (inbox / "bowtie.geojson").write_text(json.dumps(BOWTIE))
    (inbox / "Bad_Name.geojson").write_text(json.dumps(SQUARE))
    (inbox / "notes.txt").write_text("not a geojson file: ignored")

    registered, rejected = process_inbox(inbox, storage)
    assert registered == ["forest"]
    assert storage.aois().names() == ["forest"]
    assert sorted(p.name for p in (inbox / "registered").iterdir()) == ["forest.geojson"]
    assert len(rejected) == 2
    bowtie_reason = (inbox / "rejected" / "bowtie.geojson.error.txt").read_text()
    assert bowtie_reason.startswith("aoi: ") and "Self-intersection" in bowtie_reason
    name_reason = (inbox / "rejected" / "Bad_Name.geojson.error.txt").read_text()
    assert name_reason.startswith("name: ") and "slug" in name_reason
    assert (inbox / "rejected" / "bowtie.geojson").exists()
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["notes.txt"]


def test_sensor_requests_partition_once(storage: StorageResource) -> None:
    inbox = _inbox(storage)
    (inbox / "forest.geojson").write_text(json.dumps({"type": "Feature", "geometry": SQUARE}))
    (inbox / "bowtie.geojson").write_text(json.dumps(BOWTIE))
    with DagsterInstance.ephemeral() as instance:
        first = _evaluate(instance, storage)
        assert len(first.dynamic_partitions_requests) == 1
        request = first.dynamic_partitions_requests[0]
        assert request.partitions_def_name == aoi_partitions.name
        assert list(request.partition_keys) == ["forest"]
        assert storage.aois().names() == ["forest"]
        assert (inbox / "rejected" / "bowtie.geojson.error.txt").exists()
        # Dagster applies the request after the tick; do that on the real instance.
        instance.add_dynamic_partitions(aoi_partitions.name, list(request.partition_keys))

        again = _evaluate(instance, storage)
        assert not again.dynamic_partitions_requests
        assert "0 registered, 0 rejected" in str(again.skip_reason)
        assert storage.aois().names() == ["forest"]
        assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
            "bowtie.geojson",
            "bowtie.geojson.error.txt",
        ]

        # The same file dropped again is registered again (no-op) and needs no partition.
        (inbox / "forest.geojson").write_text(json.dumps(SQUARE))
        third = _evaluate(instance, storage)
        assert not third.dynamic_partitions_requests
        assert "1 registered" in str(third.skip_reason)
        assert len(list((inbox / "registered").iterdir())) == 2  # both copies kept


def test_sensor_creates_missing_inbox(storage: StorageResource) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = _evaluate(instance, storage)
    assert "created, empty" in str(result.skip_reason)
    assert (Path(storage.root) / "aois-inbox").is_dir()
