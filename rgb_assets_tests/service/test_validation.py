"""The request API refuses bad input with 422 and a field-level location, before touching Dagster.

The GraphQL URL points at a closed port: any test reaching Dagster would fail with 503, which
proves validation happens first.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rgb_assets.resources import StacSourceResource, StorageResource
from rgb_assets.service.app import create_app

SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[22.146, 45.201], [22.158, 45.201], [22.158, 45.209], [22.146, 45.209], [22.146, 45.201]]
    ],
}
GOOD: dict[str, Any] = {
    "aoi": SQUARE,
    "toi": "2019-06-01/2019-08-31",
    "bands": ["red", "green", "blue"],
    "collection": "sentinel-2-l2a",
}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(
        "http://127.0.0.1:9/graphql",
        storage=StorageResource(root=str(tmp_path / "store")),
        stac=StacSourceResource(url=str(tmp_path / "unused"), collection="sentinel-2-l2a"),
        max_toi_months=24,
    )
    return TestClient(app)


def _post(client: TestClient, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    for k, v in changes.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    r = client.post("/requests", json=body)
    assert r.status_code == 422, r.text
    return r.json()


def _locs(detail: dict[str, Any]) -> list[list[Any]]:
    return [d["loc"] for d in detail["detail"]]


def _assert_loc(detail: dict[str, Any], *loc: str, text: str = "") -> None:
    for d in detail["detail"]:
        if d["loc"][: len(loc) + 1] == ["body", *loc]:
            assert text.lower() in str(d["msg"]).lower(), d
            return
    raise AssertionError(f"no error at {loc}: {detail}")


def test_good_request_reaches_dagster(client: TestClient) -> None:
    # Valid input passes validation and fails only at the (absent) webserver.
    r = client.post("/requests", json=GOOD)
    assert r.status_code == 503, r.text


def test_missing_aoi(client: TestClient) -> None:
    _assert_loc(_post(client, aoi=None), "aoi")


def test_aoi_not_geojson(client: TestClient) -> None:
    _assert_loc(_post(client, aoi="not json"), "aoi", text="JSON")


def test_aoi_wrong_type(client: TestClient) -> None:
    _assert_loc(_post(client, aoi={"type": "Point", "coordinates": [22, 45]}), "aoi", "type")


def test_aoi_empty(client: TestClient) -> None:
    _assert_loc(_post(client, aoi={"type": "Polygon", "coordinates": []}), "aoi", text="empty")


def test_aoi_self_intersecting(client: TestClient) -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    _assert_loc(_post(client, aoi=bowtie), "aoi", text="self-intersection")


def test_aoi_out_of_range(client: TestClient) -> None:
    bad = {"type": "Polygon", "coordinates": [[[200, 0], [201, 0], [201, 1], [200, 0]]]}
    _assert_loc(_post(client, aoi=bad), "aoi", "coordinates")


def test_aoi_swapped_coordinates(client: TestClient) -> None:
    swapped = {
        "type": "Polygon",
        "coordinates": [[[45.2, 122.1], [45.3, 122.1], [45.3, 122.2], [45.2, 122.1]]],
    }
    _assert_loc(_post(client, aoi=swapped), "aoi", "coordinates", text="[latitude, longitude]")


def test_aoi_feature_without_geometry(client: TestClient) -> None:
    _assert_loc(_post(client, aoi={"type": "Feature", "properties": {}}), "aoi", "geometry")


def test_unsafe_name(client: TestClient) -> None:
    _assert_loc(_post(client, name="../etc/passwd"), "name", text="path separators")


def test_uppercase_name(client: TestClient) -> None:
    _assert_loc(_post(client, name="Forest_A"), "name", text="slug")


def test_toi_not_interval(client: TestClient) -> None:
    _assert_loc(_post(client, toi="2019-06"), "toi", text="interval")


def test_toi_bad_date(client: TestClient) -> None:
    _assert_loc(_post(client, toi="2019-13-01/2019-14-01"), "toi", text="ISO-8601")


def test_toi_end_before_start(client: TestClient) -> None:
    _assert_loc(_post(client, toi="2019-09-30/2019-06-01"), "toi", text="before")


def test_toi_too_long(client: TestClient) -> None:
    _assert_loc(_post(client, toi="2016-01-01/2019-12-31"), "toi", text="limit")


def test_toi_outside_partitions(client: TestClient) -> None:
    _assert_loc(_post(client, toi="2010-01-01/2010-02-28"), "toi", text="partition range")


def test_toi_in_the_future(client: TestClient) -> None:
    _assert_loc(_post(client, toi="2999-01-01/2999-01-31"), "toi", text="partition range")


def test_unknown_band(client: TestClient) -> None:
    _assert_loc(_post(client, bands=["red", "nir"]), "bands", text="nir")


def test_empty_bands(client: TestClient) -> None:
    _assert_loc(_post(client, bands=[]), "bands", text="empty")


def test_unknown_collection(client: TestClient) -> None:
    _assert_loc(_post(client, collection="modis"), "collection", text="not a supported")


def test_other_collection_than_deployment(client: TestClient) -> None:
    _assert_loc(_post(client, collection="landsat-c2-l2"), "collection", text="deployment")


def test_all_errors_reported_together(client: TestClient) -> None:
    detail = _post(client, toi="nope", bands=["nir"], collection="modis")
    assert {tuple(loc[:2]) for loc in _locs(detail)} >= {
        ("body", "toi"),
        ("body", "bands"),
        ("body", "collection"),
    }


def test_unknown_request_is_404(client: TestClient) -> None:
    assert client.get("/requests/0123456789abcdef").status_code == 404
    assert client.get("/requests/..%2Fetc").status_code == 404


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert "/requests" in client.get("/openapi.json").json()["paths"]
