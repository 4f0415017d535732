"""Cost limits and the pre-flight estimate (issue 13 #3): checked before any work starts."""

from __future__ import annotations

import pytest

from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.limits import (
    Limits,
    check_aoi,
    estimate_partition,
    geodesic_area_m2,
    output_shape,
)


def _box(lon: float, lat: float, d: float) -> dict[str, object]:
    return {
        "type": "Polygon",
        "coordinates": [
            [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
        ],
    }


KM_BOX = _box(22.146, 45.201, 0.01)  # about 790 m x 1110 m


def test_geodesic_area_is_in_square_metres() -> None:
    assert geodesic_area_m2(KM_BOX) == pytest.approx(0.01 * 111_320 * 0.01 * 78_600, rel=0.02)


def test_vertices_area_and_tiny_aois_are_bounded() -> None:
    assert check_aoi(KM_BOX, Limits()).vertices == 5
    with pytest.raises(InputError, match="5 vertices; the limit is 4") as e:
        check_aoi(KM_BOX, Limits(max_aoi_vertices=4))
    assert e.value.field == "aoi.coordinates"
    with pytest.raises(InputError, match="the limit is 0.5 km²"):
        check_aoi(KM_BOX, Limits(max_aoi_area_km2=0.5))
    with pytest.raises(InputError, match="less than the minimum 100 m²"):
        check_aoi(_box(22.1, 45.2, 1e-9), Limits())


def test_output_grid_blames_resolution_only_when_the_user_chose_it() -> None:
    rows, cols = output_shape(KM_BOX, 10.0)
    assert 110 <= rows <= 115 and 78 <= cols <= 82
    # The probe's 3 cm grid on a 1 km AOI (31837 x 30074 px before) is refused up front.
    with pytest.raises(InputError, match="pixels; the limit") as e:
        estimate_partition(KM_BOX, "sentinel-2-l2a", 10.0, None, Limits(), resolution=0.03)
    assert e.value.field == "resolution"
    with pytest.raises(InputError) as e:
        estimate_partition(KM_BOX, "sentinel-2-l2a", 10.0, None, Limits(max_output_pixels=100))
    assert e.value.field == "aoi"
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="positive"):
            output_shape(KM_BOX, bad)
    with pytest.raises(InputError, match="not a CRS") as e:
        output_shape(KM_BOX, 10.0, "EPSG:999999")
    assert e.value.field == "crs"


def test_estimate_counts_scenes_bytes_and_memory() -> None:
    est = estimate_partition(KM_BOX, "sentinel-2-l2a", 10.0, 6, Limits())
    assert est.crs == "EPSG:32634" and est.scenes == 6
    assert est.output_pixels == est.output_shape[0] * est.output_shape[1]
    assert est.bytes_to_archive == 6 * est.output_pixels * 8
    full = estimate_partition(KM_BOX, "sentinel-2-l2a", 10.0, 6, Limits(), archive_mode="full")
    assert full.bytes_to_archive == 6 * 10980 * 10980 * 8
    assert est.memory_bytes == 6 * est.output_pixels * 7 + est.output_pixels * 14
    with pytest.raises(InputError, match="201 scenes .* the limit is 200") as e:
        estimate_partition(KM_BOX, "sentinel-2-l2a", 10.0, 201, Limits())
    assert e.value.field == "scenes"
    # A coarser grid in another CRS is estimated on that grid.
    merc = estimate_partition(
        KM_BOX, "sentinel-2-l2a", 10.0, 1, Limits(), crs="EPSG:3857", resolution=100
    )
    assert merc.crs == "EPSG:3857" and merc.output_pixels < est.output_pixels
