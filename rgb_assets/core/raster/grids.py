"""The output grid of a composite, as an odc-geo GeoBox.

Default: a UTM zone chosen by odc-geo's ``CRS.utm``, the zone whose longitude band overlaps the
AOI's bounding box most (not the zone of the centroid; the two differ for AOIs that straddle a
zone boundary), at the collection's native resolution, snapped to whole multiples of the
resolution so every month of an AOI lands on the same pixels. AOIs never cross the antimeridian
(refused at registration, ``domain.aoi``), so the bounding box is a real extent.
"""

from __future__ import annotations

import functools

from affine import Affine
from odc.geo import xy_
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import BoundingBox, Geometry

from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.errors import InputError

MAX_PIXELS = 40_000 * 40_000


def aoi_geometry(aoi: Aoi) -> Geometry:
    return Geometry(aoi.geometry, "EPSG:4326")


@functools.lru_cache(maxsize=4096)
def _utm(lonlat: BoundingBox) -> CRS:
    """``CRS.utm`` of a lon/lat bounding box, remembered: it queries PROJ's database (about
    0.1 s), and a composite step asks twice, every run of the AOI again on long-lived workers."""
    return CRS.utm(lonlat)


def output_geobox(
    aoi: Aoi, resolution: float, crs: str | None = None, align_to: Affine | None = None
) -> GeoBox:
    """GeoBox covering the AOI; ``crs=None`` picks the AOI's UTM zone.

    ``align_to`` (a native grid's transform, same CRS and resolution) snaps the pixel edges to
    that grid, so a composite on the scenes' own grid involves no resampling at all.
    """
    if not resolution or resolution <= 0:
        raise InputError("resolution", f"{resolution!r} must be a positive number of CRS units")
    geom = aoi_geometry(aoi)
    try:
        target = _utm(geom.boundingbox) if crs in (None, "", "utm") else CRS(crs)
    except Exception as e:
        raise InputError("crs", f"{crs!r} is not a CRS pyproj understands: {e}") from None
    if target.geographic and resolution > 1:
        raise InputError(
            "resolution",
            f"{resolution:g} is in the units of {target}, degrees: give the resolution "
            "explicitly in degrees (about 0.0001 for 10 m), or use a projected CRS",
        )
    anchor = None
    if align_to is not None and abs(abs(align_to.a) - resolution) < 1e-9:
        anchor = xy_((align_to.c / resolution) % 1.0, (align_to.f / resolution) % 1.0)
    if anchor is None:
        geobox = GeoBox.from_geopolygon(geom, resolution=resolution, crs=target)
    else:
        geobox = GeoBox.from_geopolygon(geom, resolution=resolution, crs=target, anchor=anchor)
    h, w = int(geobox.shape[0]), int(geobox.shape[1])
    if h * w > MAX_PIXELS:
        units = "degrees" if target.geographic else "CRS units"
        raise InputError(
            "aoi",
            f"AOI {aoi.name!r} spans {w * resolution:.6g} x {h * resolution:.6g} {units} in "
            f"{target}: at resolution {resolution:g} that is a {h} x {w} pixel grid, over the "
            f"limit of {MAX_PIXELS} pixels. Split the AOI or give a coarser resolution.",
        )
    return geobox


def describe(geobox: GeoBox) -> dict[str, object]:
    """JSON-friendly grid description, used in metadata and to compare requested vs produced."""
    a = geobox.affine
    return {
        "crs": f"EPSG:{geobox.crs.epsg}" if geobox.crs.epsg else geobox.crs.wkt,
        "epsg": geobox.crs.epsg,
        "shape": [int(geobox.shape[0]), int(geobox.shape[1])],
        "transform": [a.a, a.b, a.c, a.d, a.e, a.f],
        "resolution": abs(a.a),
    }
