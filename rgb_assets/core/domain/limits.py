"""What one AOI, request or partition may cost, checked before any work starts.

Every surface (CLI, REST, inbox sensor, the ``raw_scenes`` step) calls the same checks, so a
continent-size AOI, a 1.5 M-vertex polygon or a 3 cm grid is refused with a message naming the
field instead of being archived for minutes and failing later. :func:`estimate_partition` is the
pre-flight estimate: scenes, output grid and pixels, bytes to archive and memory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError

from rgb_assets.core.domain.errors import InputError

_GEOD = Geod(ellps="WGS84")

#: Pixels of one whole source asset at native resolution (``full`` archive estimates).
FULL_SCENE_PIXELS = {"sentinel-2-l2a": 10980 * 10980, "landsat-c2-l2": 7800 * 7800}
#: Bytes per pixel archived per scene: three uint16 bands and the mask (at most 16 bits).
ARCHIVE_BYTES_PER_PIXEL = 3 * 2 + 2
#: Bytes per pixel a composite task holds per time slice (3 uint16 bands + uint8 mask).
TASK_BYTES_PER_PIXEL = 7
#: Bytes per output pixel: three float32 medians and a uint16 clear count.
OUTPUT_BYTES_PER_PIXEL = 3 * 4 + 2


@dataclass(frozen=True)
class Limits:
    """Upper (and the AOI's lower) bounds; defaults are safe for one machine."""

    max_aoi_vertices: int = 10_000
    max_aoi_area_km2: float = 2500.0
    min_aoi_area_m2: float = 100.0
    max_output_pixels: int = 50_000_000
    max_scenes: int = 200
    max_toi_months: int = 24
    max_body_bytes: int = 1_048_576


def _positions(coords: Any) -> int:
    if coords and isinstance(coords[0], (int, float)):
        return 1
    return sum(_positions(c) for c in coords)


def count_vertices(geometry: dict[str, Any]) -> int:
    """Positions in a GeoJSON Polygon/MultiPolygon (closing positions included)."""
    return _positions(geometry.get("coordinates") or [])


def precheck_vertices(geometry: Any, limits: Limits, field: str = "aoi") -> None:
    """Refuse too many vertices before the geometry is parsed (parsing is the costly part)."""
    if isinstance(geometry, dict) and geometry.get("type") == "Feature":
        geometry = geometry.get("geometry")
    if not isinstance(geometry, dict) or not isinstance(geometry.get("coordinates"), list):
        return  # parse_geometry reports the malformed shape
    try:
        n = count_vertices(geometry)
    except (TypeError, IndexError):
        return
    if n > limits.max_aoi_vertices:
        raise InputError(
            f"{field}.coordinates",
            f"has {n} vertices; the limit is {limits.max_aoi_vertices} (simplify the polygon)",
        )


def geodesic_area_m2(geometry: dict[str, Any]) -> float:
    """Area on the WGS84 ellipsoid in m² (holes subtracted), whatever the AOI's latitude."""
    from shapely.geometry import shape

    area, _ = _GEOD.geometry_area_perimeter(shape(geometry))
    return abs(float(area))


@dataclass(frozen=True)
class AoiSize:
    vertices: int
    area_m2: float


def check_aoi(geometry: dict[str, Any], limits: Limits, field: str = "aoi") -> AoiSize:
    """Vertices and area within the limits; raises :class:`InputError` naming ``field``."""
    precheck_vertices(geometry, limits, field)
    vertices = count_vertices(geometry)
    area = geodesic_area_m2(geometry)
    if area < limits.min_aoi_area_m2:
        raise InputError(
            field,
            f"covers {area:.3g} m², less than the minimum {limits.min_aoi_area_m2:g} m² "
            "(about one pixel): nothing could be composited",
        )
    if area > limits.max_aoi_area_km2 * 1e6:
        raise InputError(
            field,
            f"covers {area / 1e6:,.0f} km²; the limit is {limits.max_aoi_area_km2:g} km² "
            "(split it into several AOIs)",
        )
    return AoiSize(vertices, area)


def utm_crs(geometry: dict[str, Any]) -> CRS:
    """The UTM zone of the AOI's centroid (the composite's default CRS)."""
    from shapely.geometry import shape

    c = shape(geometry).centroid
    zone = min(60, int((c.x + 180) // 6) + 1)
    return CRS.from_epsg((32600 if c.y >= 0 else 32700) + zone)


def output_shape(
    geometry: dict[str, Any], resolution: float, crs: str | None = None
) -> tuple[int, int]:
    """(rows, columns) of the composite grid covering the AOI's bounds in ``crs``."""
    if not isinstance(resolution, (int, float)) or not math.isfinite(resolution) or resolution <= 0:
        raise InputError("resolution", f"{resolution!r} must be a positive number of CRS units")
    try:
        target = utm_crs(geometry) if crs in (None, "", "utm") else CRS.from_user_input(crs)
    except CRSError as e:
        raise InputError("crs", f"{crs!r} is not a CRS pyproj understands: {e}") from None
    from shapely.geometry import shape

    bounds = shape(geometry).bounds
    tr = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    try:
        left, bottom, right, top = tr.transform_bounds(*bounds, densify_pts=21)
    except Exception as e:  # pyproj raises ProjError for points outside the CRS's area
        raise InputError("crs", f"{crs!r} cannot represent this AOI: {e}") from None
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        raise InputError("crs", f"{crs!r} cannot represent this AOI")
    rows = math.ceil(abs(top - bottom) / resolution) + 1
    cols = math.ceil(abs(right - left) / resolution) + 1
    return rows, cols


def check_pixels(shape: tuple[int, int], limits: Limits, field: str = "resolution") -> int:
    pixels = shape[0] * shape[1]
    if pixels > limits.max_output_pixels:
        raise InputError(
            field,
            f"the composite grid would be {shape[0]} x {shape[1]} = {pixels:,} pixels; the limit "
            f"is {limits.max_output_pixels:,} (use a coarser resolution or a smaller AOI)",
        )
    return pixels


def check_scenes(scenes: int, limits: Limits, field: str = "scenes") -> None:
    if scenes > limits.max_scenes:
        raise InputError(
            field,
            f"{scenes} scenes match this AOI x month; the limit is {limits.max_scenes} "
            "(lower max_cloud_cover or use a smaller AOI)",
        )


@dataclass(frozen=True)
class PartitionEstimate:
    """Pre-flight estimate of one AOI x month (upper bounds, uncompressed)."""

    scenes: int | None
    crs: str
    resolution: float
    output_shape: tuple[int, int]
    output_pixels: int
    bytes_to_archive: int | None
    memory_bytes: int | None
    aoi_vertices: int
    aoi_area_km2: float

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d


def estimate_partition(
    geometry: dict[str, Any],
    collection: str,
    native_resolution: float,
    scenes: int | None,
    limits: Limits,
    *,
    crs: str | None = None,
    resolution: float | None = None,
    archive_mode: Literal["clip", "full"] = "clip",
    chunk: int = 2048,
) -> PartitionEstimate:
    """Check every limit of one partition and estimate its cost; raises :class:`InputError`.

    ``scenes`` is the number of source items the search found (None: not searched, so no
    bytes or memory estimate). ``crs``/``resolution`` are the composite's run config (None: the
    AOI's UTM zone at the collection's native resolution). A grid over the limit blames
    ``resolution`` only when the user chose one; otherwise the AOI is too large.
    """
    size = check_aoi(geometry, limits)
    res = native_resolution if resolution is None else resolution
    shape = output_shape(geometry, res, crs)
    pixels = check_pixels(shape, limits, "resolution" if resolution is not None else "aoi")
    target = utm_crs(geometry) if crs in (None, "", "utm") else CRS.from_user_input(crs)
    epsg = target.to_epsg()
    archive = memory = None
    if scenes is not None:
        check_scenes(scenes, limits)
        native = output_shape(geometry, native_resolution, None)
        per_scene = (
            native[0] * native[1]
            if archive_mode == "clip"
            else FULL_SCENE_PIXELS.get(collection, 10_000 * 10_000)
        )
        archive = scenes * per_scene * ARCHIVE_BYTES_PER_PIXEL
        task = max(scenes, 1) * min(chunk, shape[0]) * min(chunk, shape[1]) * TASK_BYTES_PER_PIXEL
        memory = task + pixels * OUTPUT_BYTES_PER_PIXEL
    return PartitionEstimate(
        scenes=scenes,
        crs=f"EPSG:{epsg}" if epsg else target.to_string(),
        resolution=float(res),
        output_shape=shape,
        output_pixels=pixels,
        bytes_to_archive=archive,
        memory_bytes=memory,
        aoi_vertices=size.vertices,
        aoi_area_km2=round(size.area_m2 / 1e6, 6),
    )
