"""output_geobox: UTM zone, resolution, pixel alignment, explicit CRS, limits; describe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box, shape

from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.raster.grids import MAX_PIXELS, _utm, describe, output_geobox

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def aoi() -> Aoi:
    """The sample AOI: about 0.94 x 0.89 km around 22.15 E, 45.2 N (UTM zone 34 N)."""
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    return Aoi.create("sample", feature)


def _covers(geobox, aoi: Aoi) -> bool:
    """The grid's bounds contain the AOI (projected with pyproj, independently of odc-geo), up to
    odc-geo's snapping tolerance of 1 % of a pixel (no pixel centre lies in that sliver)."""
    to_grid = Transformer.from_crs("EPSG:4326", geobox.crs.to_wkt(), always_xy=True)
    footprint = shapely.transform(
        shape(aoi.geometry), lambda x, y: to_grid.transform(x, y), interleaved=False
    )
    tol = 0.01 * abs(geobox.affine.a)
    return box(*geobox.boundingbox).buffer(tol, join_style="mitre").contains(footprint)


def test_default_is_the_utm_zone_snapped_to_the_resolution(aoi: Aoi):
    gb = output_geobox(aoi, 10)
    a = gb.affine
    assert gb.crs.epsg == 32634
    assert (a.a, a.e, a.b, a.d) == (10, -10, 0, 0)
    assert a.c % 10 == 0 and a.f % 10 == 0
    assert gb.shape == (92, 96)
    assert _covers(gb, aoi)
    assert output_geobox(aoi, 10, "utm") == gb
    assert output_geobox(aoi, 10, "") == gb


def test_the_utm_zone_is_the_one_overlapping_most_and_is_looked_up_once():
    """An AOI across the 18 E zone boundary, mostly east of it, is in zone 34; a second grid of
    the AOI reuses the zone instead of querying PROJ's database again."""
    geometry = json.loads(shapely.to_geojson(box(17.95, 45.0, 18.3, 45.1)))
    feature = {"type": "Feature", "properties": {}, "geometry": geometry}
    straddling = Aoi.create("straddling", feature)
    assert output_geobox(straddling, 10).crs.epsg == 32634
    hits = _utm.cache_info().hits
    assert output_geobox(straddling, 20).crs.epsg == 32634
    assert _utm.cache_info().hits == hits + 1


def test_resolution_sets_the_pixel_size(aoi: Aoi):
    gb = output_geobox(aoi, 30)
    assert gb.resolution.x == 30 and gb.resolution.y == -30
    assert gb.affine.c % 30 == 0 and gb.affine.f % 30 == 0
    assert gb.shape == (31, 33)  # edges snapped outwards to 30 m multiples
    assert _covers(gb, aoi)


def test_align_to_snaps_to_a_native_grid(aoi: Aoi):
    """Pixel edges follow the given transform's phase; another resolution's grid is ignored."""
    native = Affine(10, 0, 499985.0, 0, -10, 5000003.0)
    gb = output_geobox(aoi, 10, align_to=native)
    assert gb.affine.c % 10 == 5 and gb.affine.f % 10 == 3
    assert _covers(gb, aoi)
    coarse = Affine(20, 0, 499985.0, 0, -20, 5000003.0)
    assert output_geobox(aoi, 10, align_to=coarse) == output_geobox(aoi, 10)


def test_explicit_crs(aoi: Aoi):
    gb = output_geobox(aoi, 10, "EPSG:3035")
    assert gb.crs.epsg == 3035
    assert _covers(gb, aoi)
    assert output_geobox(aoi, 10, "EPSG:32635").crs.epsg == 32635


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"resolution": 0}, "resolution"),
        ({"resolution": -10}, "resolution"),
        ({"resolution": 10, "crs": "EPSG:999999"}, "crs"),
        ({"resolution": 10, "crs": "not a crs"}, "crs"),
        # About 94,000 x 89,000 pixels: the error names the AOI and its extent at that
        # resolution (too large an AOI or too fine a resolution), field "aoi".
        ({"resolution": 0.01}, "aoi"),
    ],
)
def test_bad_grids_name_the_field(aoi: Aoi, kwargs: dict, field: str):
    with pytest.raises(InputError) as e:
        output_geobox(aoi, **kwargs)
    assert e.value.field == field


def test_pixel_limit(aoi: Aoi):
    """The limit counts pixels: the finest grid under MAX_PIXELS passes."""
    gb = output_geobox(aoi, 0.03)
    assert gb.shape[0] * gb.shape[1] <= MAX_PIXELS


def test_describe(aoi: Aoi):
    gb = output_geobox(aoi, 10)
    d = describe(gb)
    a = gb.affine
    assert d == {
        "crs": "EPSG:32634",
        "epsg": 32634,
        "shape": [gb.shape[0], gb.shape[1]],
        "transform": [10.0, 0.0, a.c, 0.0, -10.0, a.f],
        "resolution": 10.0,
    }
    json.dumps(d)  # JSON-friendly: plain ints, floats and strings
    assert all(type(v) is int for v in d["shape"])
