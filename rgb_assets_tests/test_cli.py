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


# -- issue 13: one-line errors naming the field, limits, dry run -------------------------------


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_non_utf8_file_is_one_line(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.geojson"
    path.write_bytes(json.dumps(SQUARE).encode() + b"\xe9\xff")
    assert cli.main(["aoi", "add", "latin", str(path)]) == 2
    assert "geojson_file:" in _one_line_error(capsys) and deployment.stored() == []


@pytest.mark.parametrize(
    ("variable", "value", "text"),
    [
        ("RGB_ASSETS_DEPLOYMENT", "prod", "RGB_ASSETS_DEPLOYMENT: 'prod' is not one of"),
        ("RGB_ASSETS_STORAGE_ROOT", "ftp://host/store", "RGB_ASSETS_STORAGE_ROOT:"),
        ("RGB_ASSETS_COLLECTION", "modis", "RGB_ASSETS_COLLECTION:"),
        ("RGB_ASSETS_MAX_AOI_VERTICES", "many", "RGB_ASSETS_MAX_AOI_VERTICES:"),
        ("RGB_ASSETS_ALLOWED_ROOTS", "/no/such/folder", "RGB_ASSETS_ALLOWED_ROOTS:"),
        ("RGB_ASSETS_STAC_TIMEOUT_S", "-5", "RGB_ASSETS_STAC_TIMEOUT_S:"),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(
    deployment: Deployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    text: str,
) -> None:
    monkeypatch.setenv(variable, value)
    for argv in (["aoi", "add", "x", _geojson(tmp_path, SQUARE)], ["aoi", "list"]):
        assert cli.main(argv) == 2
        assert text in _one_line_error(capsys)
    assert deployment.stored() == [] and deployment.partitions() == []


def _circle(n: int, r: float) -> dict[str, object]:
    import math

    pts = [
        [22.15 + r * math.cos(2 * math.pi * i / n), 45.2 + r * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    return {"type": "Polygon", "coordinates": [[*pts, pts[0]]]}


@pytest.mark.parametrize(
    ("geometry", "env", "field", "text"),
    [
        (_circle(400, 0.01), {"RGB_ASSETS_MAX_AOI_VERTICES": "300"}, "aoi.coordinates", "401"),
        (_circle(64, 3.0), {}, "aoi", "the limit is 2500 km²"),
        (_circle(8, 1e-7), {}, "aoi", "less than the minimum"),
    ],
)
def test_aoi_over_a_limit_is_refused_before_anything_is_stored(
    deployment: Deployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    geometry: dict[str, object],
    env: dict[str, str],
    field: str,
    text: str,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["aoi", "add", "big", _geojson(tmp_path, geometry)]) == 2
    err = _one_line_error(capsys)
    assert err.startswith(f"error: {field}: ") and text in err, err
    assert deployment.stored() == [] and deployment.partitions() == []


def test_dry_run_estimates_and_registers_nothing(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str], sample_dir: Path
) -> None:
    path = _geojson(tmp_path, SQUARE)
    assert cli.main(["aoi", "add", "dry", path, "--dry-run", "--month", "2019-07"]) == 0
    out = capsys.readouterr().out
    estimate = json.loads(out[: out.rindex("}") + 1])
    assert estimate["aoi"] == "dry" and estimate["month"] == "2019-07"
    assert estimate["scenes"] == 5 and estimate["crs"] == "EPSG:32634"
    assert estimate["output_pixels"] == estimate["output_shape"][0] * estimate["output_shape"][1]
    assert estimate["bytes_to_archive"] > 0 and estimate["memory_bytes"] > 0
    assert "nothing registered" in out
    assert deployment.stored() == [] and deployment.partitions() == []
    # The dry run applies the same limits as a registration.
    assert cli.main(["aoi", "add", "dry", _geojson(tmp_path, _circle(64, 3.0)), "--dry-run"]) == 2
    assert "the limit is 2500 km²" in _one_line_error(capsys)
