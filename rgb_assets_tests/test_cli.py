"""``rgb-assets aoi add|list|remove`` keep the AOI registry and the Dagster partition in step.

Each test gets its own ``DAGSTER_HOME`` and storage root (the variables the CLI reads), and
checks the real files and the real instance afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance

from rgb_assets import cli
from rgb_assets.partitions import aoi_partitions

SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[22.146, 45.201], [22.158, 45.201], [22.158, 45.209], [22.146, 45.209], [22.146, 45.201]]
    ],
}


@dataclass
class Deployment:
    home: Path
    store: Path

    def partitions(self) -> list[str]:
        with DagsterInstance.from_config(str(self.home)) as instance:
            return list(instance.get_dynamic_partitions(aoi_partitions.name))

    def stored(self) -> list[str]:
        folder = self.store / "aois"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RGB_ASSETS_STORAGE_ROOT", str(tmp_path / "store"))
    yield Deployment(home, tmp_path / "store")


def _geojson(tmp_path: Path, obj: object, name: str = "aoi.geojson") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def test_add_list_remove(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feature = {"type": "Feature", "properties": {}, "geometry": SQUARE}
    assert cli.main(["aoi", "add", "my-forest", _geojson(tmp_path, feature)]) == 0
    assert "'my-forest' registered" in capsys.readouterr().out
    assert deployment.stored() == ["my-forest.geojson"]
    stored = json.loads((deployment.store / "aois" / "my-forest.geojson").read_text())
    assert stored["geometry"] == SQUARE
    assert deployment.partitions() == ["my-forest"]

    # Adding the same geometry again is a no-op.
    assert cli.main(["aoi", "add", "my-forest", _geojson(tmp_path, SQUARE)]) == 0
    assert "already registered" in capsys.readouterr().out
    assert deployment.partitions() == ["my-forest"]

    assert cli.main(["aoi", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("my-forest\t[22.14600, 45.20100, 22.15800, 45.20900]")
    assert "no Dagster partition" not in out

    # Products already made must survive: the message says so and they are not touched.
    product = deployment.store / "derived" / "my-forest" / "kept.tif"
    product.parent.mkdir(parents=True)
    product.write_bytes(b"composite")
    assert cli.main(["aoi", "remove", "my-forest"]) == 0
    out = capsys.readouterr().out
    assert "'my-forest' removed" in out and "already produced are kept" in out
    assert deployment.stored() == [] and deployment.partitions() == []
    assert product.read_bytes() == b"composite"

    assert cli.main(["aoi", "list"]) == 0
    assert capsys.readouterr().out == ""
    assert cli.main(["aoi", "remove", "my-forest"]) == 0
    assert "was not registered" in capsys.readouterr().out


def test_list_flags_an_aoi_without_partition(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["aoi", "add", "lonely", _geojson(tmp_path, SQUARE)]) == 0
    with DagsterInstance.from_config(str(deployment.home)) as instance:
        instance.delete_dynamic_partition(aoi_partitions.name, "lonely")
    capsys.readouterr()
    assert cli.main(["aoi", "list"]) == 0
    assert "lonely\t" in (out := capsys.readouterr().out) and "(no Dagster partition)" in out


@pytest.mark.parametrize(
    ("name", "geometry", "field", "text"),
    [
        ("../etc", SQUARE, "name", "path separators"),
        ("My_Forest", SQUARE, "name", "slug"),
        (
            "bowtie",
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            "aoi",
            "Self-intersection",
        ),
        ("point", {"type": "Point", "coordinates": [22, 45]}, "aoi.type", "Point"),
        ("text", "not json", "aoi", "JSON"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    deployment: Deployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    geometry: object,
    field: str,
    text: str,
) -> None:
    path = tmp_path / "in.geojson"
    path.write_text(geometry if isinstance(geometry, str) else json.dumps(geometry))
    assert cli.main(["aoi", "add", name, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}: ") and text in err, err
    assert deployment.stored() == [] and deployment.partitions() == []


def test_unreadable_file_and_missing_dagster_home(
    deployment: Deployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli.main(["aoi", "add", "x", str(tmp_path / "missing.geojson")]) == 2
    assert capsys.readouterr().err.startswith("error: geojson_file: cannot read")
    monkeypatch.delenv("DAGSTER_HOME")
    assert cli.main(["aoi", "add", "x", _geojson(tmp_path, SQUARE)]) == 2
    assert capsys.readouterr().err.startswith("error: DAGSTER_HOME: is not set")
    assert deployment.stored() == []
