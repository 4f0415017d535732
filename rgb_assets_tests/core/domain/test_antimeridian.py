"""Areas across the antimeridian are refused at registration with how to split them, never
read as their complement; grid errors name the real cause."""

from __future__ import annotations

import pytest

from rgb_assets.core.domain.aoi import Aoi, AoiRegistry, parse_geometry
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.raster.grids import output_geobox
from rgb_assets.core.storage.store import Store

# Drawn by hand across 180°: 179.8 → -179.8 (0.4° wide as meant; 359.6° wide as GeoJSON).
ACROSS = {
    "type": "Polygon",
    "coordinates": [[[179.8, -17.0], [-179.8, -17.0], [-179.8, -16.6], [179.8, -16.6],
                     [179.8, -17.0]]],
}
# The same area split per RFC 7946 3.1.9.
SPLIT = {
    "type": "MultiPolygon",
    "coordinates": [
        [[[179.8, -17.0], [180.0, -17.0], [180.0, -16.6], [179.8, -16.6], [179.8, -17.0]]],
        [[[-180.0, -17.0], [-179.8, -17.0], [-179.8, -16.6], [-180.0, -16.6],
          [-180.0, -17.0]]],
    ],
}


def test_polygon_drawn_across_180_is_refused_with_how_to_split():
    with pytest.raises(InputError) as err:
        parse_geometry(ACROSS)
    msg = str(err.value)
    assert err.value.field == "aoi.coordinates"
    assert "179.8 to -179.8" in msg and "long way round" in msg
    assert "from 179.8 to 180" in msg and "from -180 to -179.8" in msg and "RFC 7946" in msg


def test_rfc7946_split_is_refused_with_one_aoi_per_side():
    with pytest.raises(InputError, match=r"touches both \+180 and -180.*two AOIs"):
        parse_geometry(SPLIT)


def test_each_side_registers_and_gets_its_own_utm_grid(tmp_path):
    registry = AoiRegistry(Store(str(tmp_path)))
    west, _ = registry.add("fiji-west", {"type": "Polygon", "coordinates": SPLIT["coordinates"][0]})
    east, _ = registry.add("fiji-east", {"type": "Polygon", "coordinates": SPLIT["coordinates"][1]})
    assert west.bbox == (179.8, -17.0, 180.0, -16.6)
    assert east.bbox == (-180.0, -17.0, -179.8, -16.6)
    gw, ge = output_geobox(west, 10.0), output_geobox(east, 10.0)
    assert gw.crs.epsg == 32760 and ge.crs.epsg == 32701  # zones 60 and 1, south
    for g in (gw, ge):
        assert 2000 < g.shape[1] < 2300 and 4400 < g.shape[0] < 4500  # ~21 km x 44 km


def test_registering_refuses_and_writes_nothing(tmp_path):
    store = Store(str(tmp_path))
    with pytest.raises(InputError):
        AoiRegistry(store).add("fiji", ACROSS)
    assert AoiRegistry(store).names() == []


def test_a_wide_polygon_with_intermediate_vertices_is_not_an_antimeridian_crossing():
    wide = {
        "type": "Polygon",
        "coordinates": [[[-100.0, 10.0], [0.0, 10.0], [100.0, 10.0], [100.0, 11.0],
                         [0.0, 11.0], [-100.0, 11.0], [-100.0, 10.0]]],
    }
    assert parse_geometry(wide)["type"] == "Polygon"


def test_grid_too_large_names_the_aoi_and_the_extent():
    big = Aoi.create(
        "big",
        {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 5], [0, 0]]]},
    )
    with pytest.raises(InputError) as err:
        output_geobox(big, 10.0, "EPSG:3857")
    assert err.value.field == "aoi"
    assert "spans" in str(err.value) and "Split the AOI or give a coarser resolution" in str(
        err.value
    )


def test_degrees_crs_with_a_metre_resolution_is_refused_naming_the_units():
    small = Aoi.create(
        "small",
        {"type": "Polygon", "coordinates": [[[22.1, 45.2], [22.2, 45.2], [22.2, 45.3],
                                             [22.1, 45.3], [22.1, 45.2]]]},
    )
    with pytest.raises(InputError, match="degrees"):
        output_geobox(small, 10.0, "EPSG:4326")
    g = output_geobox(small, 0.001, "EPSG:4326")
    assert g.shape == (100, 100)
