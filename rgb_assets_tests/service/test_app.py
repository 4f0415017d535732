"""The request API refuses bad input with 422 (conflicts with 409) and a field-level location,
before touching Dagster; request ids depend only on the work asked for.

The GraphQL URL points at a closed port: any test reaching Dagster would fail with 503, which
proves validation happens first.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from fastapi.testclient import TestClient

from rgb_assets.config import Settings
from rgb_assets.core.domain.limits import Limits
from rgb_assets.core.storage.store import Store
from rgb_assets.resources import StorageResource
from rgb_assets.service.app import create_app
from rgb_assets.service.requests import item_url, parse_toi, request_id

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


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    """A deployment on a temporary store whose Dagster webserver is down (closed port)."""
    return Settings(
        dagster_graphql="http://127.0.0.1:9/graphql",
        storage_root=str(tmp_path / "store"),
        stac_url=str(tmp_path / "unused"),
        collection="sentinel-2-l2a",
    ).replace(**changes)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(settings_for(tmp_path)))


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


# -- request ids, name conflicts, bands, item URLs (no Dagster needed) ----------------------


def _months(toi: str) -> list[Any]:
    return parse_toi(toi, 24)


def test_request_id_ignores_how_the_same_work_is_written() -> None:
    rid = request_id(SQUARE, _months("2019-06-01/2019-08-31"), "sentinel-2-l2a")
    ring = SQUARE["coordinates"][0]
    rotated = {"type": "Polygon", "coordinates": [ring[2:-1] + ring[:3]]}
    reversed_ring = {"type": "Polygon", "coordinates": [ring[::-1]]}
    multi = {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]}
    for geometry in (rotated, reversed_ring, multi):
        assert request_id(geometry, _months("2019-06-01/2019-08-31"), "sentinel-2-l2a") == rid
    for toi in ("2019-06-01T00:00:00Z/2019-08-31T23:59:59Z", "2019-06-15/2019-08-02"):
        assert request_id(SQUARE, _months(toi), "sentinel-2-l2a") == rid


def test_request_id_changes_with_the_work() -> None:
    rid = request_id(SQUARE, _months("2019-06-01/2019-08-31"), "sentinel-2-l2a")
    moved = copy.deepcopy(SQUARE)
    moved["coordinates"][0][1][0] += 0.001
    assert request_id(moved, _months("2019-06-01/2019-08-31"), "sentinel-2-l2a") != rid
    assert request_id(SQUARE, _months("2019-06-01/2019-09-01"), "sentinel-2-l2a") != rid
    assert request_id(SQUARE, _months("2019-06-01/2019-08-31"), "landsat-c2-l2") != rid


def _records(store_root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((store_root / "requests").glob("*.json"))]


def test_equivalent_posts_share_one_request(client: TestClient, tmp_path: Path) -> None:
    # Dagster is down (503), but the request record is written first, under one id.
    feature = {"type": "Feature", "properties": {}, "geometry": SQUARE}
    bodies = [
        GOOD,
        {**GOOD, "toi": "2019-06-01T00:00:00Z/2019-08-31T23:59:59Z"},
        {**GOOD, "aoi": feature, "bands": ["blue", "green", "red"]},
    ]
    for body in bodies:
        assert client.post("/requests", json=body).status_code == 503
    records = _records(tmp_path / "store")
    assert len(records) == 1
    assert records[0]["months"] == ["2019-06", "2019-07", "2019-08"]


def test_band_subset_is_refused(client: TestClient) -> None:
    _assert_loc(_post(client, bands=["red"]), "bands", text="missing ['green', 'blue']")


def _conflict(client: TestClient, **changes: Any) -> dict[str, Any]:
    r = client.post("/requests", json={**GOOD, **changes})
    assert r.status_code == 409, r.text
    return r.json()


def test_name_with_another_geometry_is_a_conflict(client: TestClient, tmp_path: Path) -> None:
    registry = StorageResource(root=str(tmp_path / "store")).aois()
    other = copy.deepcopy(SQUARE)
    other["coordinates"][0][2] = [22.170, 45.209]
    registry.add("forest", other)
    _assert_loc(_conflict(client, name="forest"), "name", text="different geometry")
    assert registry.names() == ["forest"] and not _records(tmp_path / "store")


def test_geometry_under_another_name_is_a_conflict(client: TestClient, tmp_path: Path) -> None:
    registry = StorageResource(root=str(tmp_path / "store")).aois()
    ring = SQUARE["coordinates"][0]
    registry.add("forest", {"type": "Polygon", "coordinates": [ring[::-1]]})
    _assert_loc(_conflict(client, name="meadow"), "name", text="registered as AOI 'forest'")
    assert registry.names() == ["forest"] and not _records(tmp_path / "store")
    # Without a name the registered AOI is reused (the differently ordered ring is the same area).
    assert client.post("/requests", json=GOOD).status_code == 503
    assert _records(tmp_path / "store")[0]["aoi"] == "forest"
    # Once requested as "forest", the same work under another name is a conflict too.
    _assert_loc(_conflict(client, name="meadow"), "name", text="already requested")


def test_item_url_local_is_a_file_uri(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.write_text("derived/x/item.json", "{}")
    url = item_url(store, "derived/x/item.json")
    assert url.startswith("file:///")
    assert Path(url2pathname(urlparse(url).path)).read_text() == "{}"


def test_item_url_s3_keeps_the_bucket_url() -> None:
    store = Store("s3://bucket/prefix", anon=True)
    assert item_url(store, "derived/x/item.json") == "s3://bucket/prefix/derived/x/item.json"


# -- strict inputs (issue 13 #6) ------------------------------------------------------------


@pytest.mark.parametrize("field", ["band", "foo"])
def test_unknown_field_is_422(client: TestClient, field: str) -> None:
    r = client.post("/requests", json={**GOOD, field: ["red"]})
    assert r.status_code == 422, r.text
    assert ["body", field] in _locs(r.json())


def test_duplicate_bands_are_422(client: TestClient, tmp_path: Path) -> None:
    _assert_loc(
        _post(client, bands=["red", "green", "blue", "red"]), "bands", text="more than once"
    )
    assert not (tmp_path / "store").exists()


def test_toi_reversed_in_utc_is_422(client: TestClient) -> None:
    # Written in order, but once converted to UTC the end (10:00Z on 30 June) precedes the
    # start (04:00Z on 1 July).
    detail = _post(client, toi="2019-06-30T23:00-05:00/2019-07-01T00:00+14:00")
    _assert_loc(detail, "toi", text="before start")


def test_toi_offsets_pick_utc_months() -> None:
    # 23:30 at UTC-05:00 on 31 May is 04:30Z on 1 June: June only.
    assert [m.key for m in parse_toi("2019-05-31T23:30-05:00/2019-06-10", 24)] == ["2019-06"]


# -- costs (issue 13 #3) --------------------------------------------------------------------


def _ring(n: int, lon: float = 22.15, lat: float = 45.2, r: float = 0.01) -> dict[str, Any]:
    import math

    pts = [
        [lon + r * math.cos(2 * math.pi * i / n), lat + r * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    return {"type": "Polygon", "coordinates": [[*pts, pts[0]]]}


def test_too_many_vertices_is_422_before_parsing(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path).replace(limits=Limits(max_aoi_vertices=100)))
    r = TestClient(app).post("/requests", json={**GOOD, "aoi": _ring(200)})
    assert r.status_code == 422
    _assert_loc(r.json(), "aoi", "coordinates", text="201 vertices")
    assert not (tmp_path / "store").exists()


def test_continent_size_aoi_is_422(client: TestClient, tmp_path: Path) -> None:
    africa = {
        "type": "Polygon",
        "coordinates": [[[-17, -34], [51, -34], [51, 37], [-17, 37], [-17, -34]]],
    }
    _assert_loc(_post(client, aoi=africa), "aoi", text="km²; the limit is 2500")
    assert not (tmp_path / "store").exists()


def test_tiny_aoi_is_422(client: TestClient) -> None:
    e = 1e-9
    tiny = {
        "type": "Polygon",
        "coordinates": [[[22.15, 45.2], [22.15 + e, 45.2], [22.15 + e, 45.2 + e], [22.15, 45.2]]],
    }
    _assert_loc(_post(client, aoi=tiny), "aoi", text="less than the minimum")


def test_body_over_the_limit_is_413_without_reading_it(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path).replace(limits=Limits(max_body_bytes=10_000)))
    padding = {**GOOD, "name": "x" * 20_000}
    r = TestClient(app).post("/requests", json=padding)
    assert r.status_code == 413, r.text
    assert "exceeds 10000" in r.text and not (tmp_path / "store").exists()


def test_chunked_body_without_length_is_411(client: TestClient) -> None:
    def chunks() -> Any:
        yield json.dumps(GOOD).encode()

    r = client.post("/requests", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 411, r.text


def test_dry_run_estimates_from_a_real_search_and_changes_nothing(
    tmp_path: Path, sample_dir: Path
) -> None:
    settings = settings_for(tmp_path, stac_url=str(sample_dir / "collection.json"))
    r = TestClient(create_app(settings)).post("/requests?dry_run=true", json=GOOD)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["dry_run"] is True and answer["months"] == ["2019-06", "2019-07", "2019-08"]
    scenes = [e["scenes"] for e in answer["estimates"]]
    assert all(s > 0 for s in scenes) and answer["total_scenes"] == sum(scenes)
    first = answer["estimates"][0]
    assert first["crs"] == "EPSG:32634" and first["resolution"] == 10.0
    # About 940 m x 890 m at 10 m.
    assert 80 <= first["output_shape"][0] <= 100 and 80 <= first["output_shape"][1] <= 110
    assert first["bytes_to_archive"] == first["scenes"] * first["output_pixels"] * 8
    assert answer["max_memory_bytes"] > 0
    assert not (tmp_path / "store").exists()  # nothing registered or recorded


def test_dry_run_over_the_scene_limit_is_422(tmp_path: Path, sample_dir: Path) -> None:
    settings = settings_for(
        tmp_path, stac_url=str(sample_dir / "collection.json"), limits=Limits(max_scenes=1)
    )
    r = TestClient(create_app(settings)).post("/requests?dry_run=true", json=GOOD)
    assert r.status_code == 422, r.text
    assert "the limit is 1" in r.text


# -- authentication (issue 13 #7) -----------------------------------------------------------


@pytest.fixture
def secured(tmp_path: Path) -> TestClient:
    return TestClient(create_app(settings_for(tmp_path, api_token="s3cret-token")))


def test_no_token_is_401(secured: TestClient, tmp_path: Path) -> None:
    r = secured.post("/requests", json=GOOD)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert secured.get("/requests/0123456789abcdef").status_code == 401
    assert not (tmp_path / "store").exists()


def test_wrong_token_is_403(secured: TestClient) -> None:
    for header in ("Bearer s3cret-tokeX", "Bearer s3cret", "Bearer s3cret-token-and-more"):
        r = secured.post("/requests", json=GOOD, headers={"Authorization": header})
        assert r.status_code == 403, (header, r.text)


def test_right_token_reaches_validation_and_dagster(secured: TestClient) -> None:
    auth = {"Authorization": "Bearer s3cret-token"}
    assert secured.post("/requests", json={**GOOD, "foo": 1}, headers=auth).status_code == 422
    assert secured.post("/requests", json=GOOD, headers=auth).status_code == 503  # Dagster down
    assert secured.get("/health").status_code == 200  # liveness needs no token


def test_openapi_documents_the_bearer_scheme(secured: TestClient) -> None:
    spec = secured.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
