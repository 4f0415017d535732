"""Bad input gets an error naming the field and the problem, and nothing is half-written."""

from __future__ import annotations

import pytest

from rgb_assets.core.domain.aoi import AoiRegistry, parse_geometry, validate_slug
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.errors import InputError, StacSourceError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.source import open_source
from rgb_assets.core.storage.store import Store
from rgb_assets.partitions import check_month_in_range

SQUARE = [[[22.1, 45.1], [22.2, 45.1], [22.2, 45.2], [22.1, 45.2], [22.1, 45.1]]]


@pytest.mark.parametrize(
    ("geometry", "field", "problem"),
    [
        ("{not json", "aoi", "not valid JSON"),
        ([1, 2], "aoi", "GeoJSON geometry or Feature"),
        ({"type": "Point", "coordinates": [1, 2]}, "aoi.type", "not one of Polygon"),
        ({"type": "Polygon"}, "aoi.coordinates", "missing"),
        ({"type": "Polygon", "coordinates": []}, "aoi.coordinates", "empty"),
        ({"type": "Polygon", "coordinates": [[]]}, "aoi.coordinates", "empty"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
            "aoi.coordinates",
            "at least 4",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
            "aoi.coordinates",
            "not closed",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            "aoi",
            "Self-intersection",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]},
            "aoi",
            "not a valid polygon",
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [[[45.1, 122.1], [45.2, 122.1], [45.2, 122.2], [45.1, 122.1]]],
            },
            "aoi.coordinates",
            "outside [-90, 90]",
        ),
        (
            {"type": "Polygon", "coordinates": [[[190, 0], [191, 0], [191, 1], [190, 0]]]},
            "aoi.coordinates",
            "longitude 190",
        ),
        ({"type": "Feature", "properties": {}}, "aoi.geometry", "no geometry"),
        (
            {"type": "Polygon", "coordinates": [[["a", 0], [1, 0], [1, 1], ["a", 0]]]},
            "aoi.coordinates",
            "position",
        ),
    ],
)
def test_bad_geometry_names_field_and_problem(geometry, field, problem):
    with pytest.raises(InputError) as e:
        parse_geometry(geometry)
    assert e.value.field == field
    assert problem in e.value.problem


def test_swapped_lat_lon_gets_a_hint():
    swapped = {
        "type": "Polygon",
        "coordinates": [[[45.1, 122.1], [45.2, 122.1], [45.2, 122.2], [45.1, 122.1]]],
    }
    with pytest.raises(InputError, match="looks like \\[latitude, longitude\\]"):
        parse_geometry(swapped)


@pytest.mark.parametrize(
    "name", ["../etc", "a/b", "a\\b", "A-Upper", "-lead", "trail-", "", "a--b", "x" * 70, "a.b", 5]
)
def test_unsafe_aoi_names_are_refused(name):
    with pytest.raises(InputError) as e:
        validate_slug(name)
    assert e.value.field == "name"


def test_refused_aoi_leaves_nothing_written(tmp_path):
    reg = AoiRegistry(Store(tmp_path))
    with pytest.raises(InputError):
        reg.add(
            "ok-name",
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
        )
    with pytest.raises(InputError):
        reg.add("../escape", {"type": "Polygon", "coordinates": SQUARE})
    assert list(tmp_path.rglob("*")) == []
    aoi, created = reg.add("fine", {"type": "Polygon", "coordinates": SQUARE})
    assert created and reg.names() == ["fine"]
    assert reg.add("fine", {"type": "Polygon", "coordinates": SQUARE}) == (aoi, False)
    other = [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]
    with pytest.raises(InputError, match="different geometry"):
        reg.add("fine", {"type": "Polygon", "coordinates": other})


@pytest.mark.parametrize("month", ["2001-01", "2999-12"])
def test_month_outside_partition_range(month):
    with pytest.raises(InputError) as e:
        check_month_in_range(Month.parse(month))
    assert e.value.field == "month" and "outside the partition range" in e.value.problem


@pytest.mark.parametrize("text", ["2019-13", "2019/06", "June", "2019-6"])
def test_month_syntax(text):
    with pytest.raises(InputError, match="month"):
        Month.parse(text)


def test_unknown_collection():
    with pytest.raises(InputError) as e:
        get_collection("sentinel-3-olci")
    assert e.value.field == "collection" and "sentinel-2-l2a" in e.value.problem


def test_stac_source_that_cannot_be_opened(tmp_path):
    with pytest.raises(StacSourceError, match="no catalog.json"):
        open_source(str(tmp_path / "nowhere"))
    (tmp_path / "catalog.json").write_text("{not stac")
    with pytest.raises(StacSourceError, match="cannot be read as STAC"):
        open_source(str(tmp_path))
    with pytest.raises(StacSourceError, match="cannot be opened as a STAC API"):
        open_source("http://127.0.0.1:9/stac", timeout=2, max_retries=0)
