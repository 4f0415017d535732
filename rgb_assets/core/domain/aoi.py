"""Areas of interest: a safe slug (the Dagster partition key) plus a validated GeoJSON polygon.

The registry keeps one GeoJSON Feature per AOI in a folder of the store, so every run (on any
Dask worker) reads the same geometry the user registered.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.limits import Limits, check_aoi, precheck_vertices
from rgb_assets.core.storage import layout
from rgb_assets.core.storage.store import Store

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
AREA_TYPES = ("Polygon", "MultiPolygon")


def validate_slug(name: Any, field: str = "name") -> str:
    """A lowercase slug: letters, digits, single hyphens; no path separators, dots or ``..``."""
    if not isinstance(name, str) or not name:
        raise InputError(field, "must be a non-empty string")
    if "/" in name or "\\" in name or ".." in name:
        raise InputError(field, f"{name!r} must not contain path separators or '..'")
    if not SLUG_RE.match(name) or "--" in name:
        raise InputError(
            field,
            f"{name!r} is not a safe slug: use 1-64 lowercase letters, digits and single "
            "hyphens, starting and ending with a letter or digit",
        )
    return name


def _positions(coords: Any, depth: int) -> list[list[float]]:
    """Flatten GeoJSON coordinates of a given nesting depth to positions (validated shape)."""
    if depth == 0:
        if (
            not isinstance(coords, (list, tuple))
            or len(coords) < 2
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords)
        ):
            raise InputError(
                "aoi.coordinates", f"{coords!r} is not a [longitude, latitude] position"
            )
        return [list(coords)]
    if not isinstance(coords, (list, tuple)):
        raise InputError("aoi.coordinates", "must be nested arrays of positions")
    out: list[list[float]] = []
    for c in coords:
        out.extend(_positions(c, depth - 1))
    return out


def parse_geometry(obj: Any, field: str = "aoi") -> dict[str, Any]:
    """Validate a GeoJSON Polygon/MultiPolygon (or a Feature holding one) in WGS84 lon/lat.

    Rejects, naming the field: non-GeoJSON, other geometry types, empty geometries, unclosed
    rings, coordinates out of range (with a hint when latitude and longitude look swapped),
    self-intersections and zero area.
    """
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as e:
            raise InputError(field, f"is not valid JSON: {e.msg}") from None
    if not isinstance(obj, dict):
        raise InputError(field, "must be a GeoJSON geometry or Feature object")
    if obj.get("type") == "Feature":
        obj = obj.get("geometry")
        field = f"{field}.geometry"
        if not isinstance(obj, dict):
            raise InputError(field, "Feature has no geometry")
    gtype = obj.get("type")
    if gtype not in AREA_TYPES:
        raise InputError(f"{field}.type", f"{gtype!r} is not one of {', '.join(AREA_TYPES)}")
    if "coordinates" not in obj:
        raise InputError(f"{field}.coordinates", "is missing")
    coords = obj["coordinates"]
    depth = 2 if gtype == "Polygon" else 3
    cfield = f"{field}.coordinates"
    if not isinstance(coords, list) or not coords:
        raise InputError(cfield, "is empty")
    positions = _positions(coords, depth)
    if not positions:
        raise InputError(cfield, "is empty")
    for lon, lat, *_ in positions:
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise InputError(cfield, "contains a non-finite number")
        if abs(lat) > 90:
            hint = " (looks like [latitude, longitude]; GeoJSON order is [longitude, latitude])"
            raise InputError(
                cfield,
                f"latitude {lat} is outside [-90, 90]{hint if abs(lon) <= 90 else ''}",
            )
        if abs(lon) > 180:
            raise InputError(cfield, f"longitude {lon} is outside [-180, 180]")
    rings = [coords] if gtype == "Polygon" else coords
    for poly in rings:
        if not poly:
            raise InputError(cfield, "has a polygon with no rings")
        for ring in poly:
            if len(ring) < 4:
                raise InputError(cfield, "a linear ring needs at least 4 positions")
            if list(ring[0][:2]) != list(ring[-1][:2]):
                raise InputError(cfield, "a linear ring is not closed (first != last position)")
    _refuse_antimeridian(rings, cfield)
    try:
        geom = shape(obj)
    except Exception as e:  # shapely raises several types for malformed input
        raise InputError(field, f"is not a valid GeoJSON geometry: {e}") from None
    if geom.is_empty:
        raise InputError(field, "is empty")
    if not geom.is_valid:
        raise InputError(field, f"is not a valid polygon: {explain_validity(geom)}")
    if geom.area <= 0:
        raise InputError(field, "has zero area")
    return {"type": gtype, "coordinates": json.loads(json.dumps(mapping(geom)["coordinates"]))}


def _refuse_antimeridian(polygons: list[Any], field: str) -> None:
    """Refuse areas across the antimeridian, with how to split them.

    A ring edge spanning more than 180° of longitude (drawn from 179.8 to -179.8) means, to
    GeoJSON, the long way round the globe: searched as is, it would select the complement. An
    RFC 7946 split (parts touching +180 and -180) is valid GeoJSON, but one AOI is one
    search, one output grid and one clip window, and none of these can span the seam here:
    each side is registered as its own AOI instead.
    """
    for poly in polygons:
        for ring in poly:
            for (x0, _y0, *_), (x1, _y1, *_) in zip(ring, ring[1:], strict=False):
                if abs(x1 - x0) > 180:
                    west = [v for v in (x0, x1) if v > 0]
                    east = [v for v in (x0, x1) if v < 0]
                    raise InputError(
                        field,
                        f"an edge runs from longitude {x0} to {x1}, more than 180° apart: "
                        "GeoJSON reads that as the long way round the globe, not across the "
                        "antimeridian. Split the area at ±180° (RFC 7946, 3.1.9) and register "
                        f"each side as its own AOI: one from {min(west, default=179.0)} to 180, "
                        f"one from -180 to {max(east, default=-179.0)} (e.g. NAME-west and "
                        "NAME-east). A polygon really wider than 180° needs intermediate "
                        "vertices.",
                    )
    xs = [p[0] for poly in polygons for ring in poly for p in ring]
    if max(xs) >= 180 and min(xs) <= -180:
        raise InputError(
            field,
            "the area touches both +180 and -180 (an antimeridian split): an AOI must lie on "
            "one side of ±180°, because one AOI gets one search, one output grid and one clip "
            "window. Register the parts east and west of 180° as two AOIs (e.g. NAME-west "
            "with the polygons up to 180, NAME-east with those from -180).",
        )


@dataclass(frozen=True)
class Aoi:
    """A named area of interest in WGS84."""

    name: str
    geometry: dict[str, Any]

    @classmethod
    def create(cls, name: Any, geometry: Any) -> Aoi:
        return cls(validate_slug(name), parse_geometry(geometry))

    @cached_property
    def shape(self) -> BaseGeometry:
        return shape(self.geometry)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in self.shape.bounds)  # type: ignore[return-value]

    def same_geometry(self, other: Aoi) -> bool:
        return shapely.equals_exact(self.shape, other.shape, tolerance=1e-9)

    def to_feature(self) -> dict[str, Any]:
        return {
            "type": "Feature",
            "id": self.name,
            "properties": {"name": self.name},
            "geometry": self.geometry,
        }


class AoiRegistry:
    """Named AOIs stored as ``aois/{name}.geojson`` in a store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _key(self, name: str) -> str:
        return layout.aoi_key(validate_slug(name))

    def add(
        self, name: Any, geometry: Any, *, replace: bool = False, limits: Limits | None = None
    ) -> tuple[Aoi, bool]:
        """Register an AOI; returns ``(aoi, created)``.

        Registering the same name with the same geometry is a no-op (idempotent requests); a
        different geometry under an existing name is refused unless ``replace``. With
        ``limits``, vertices are counted before the geometry is parsed and the area checked
        before anything is stored.
        """
        if limits is not None:
            if isinstance(geometry, str):
                try:
                    geometry = json.loads(geometry)
                except json.JSONDecodeError as e:
                    raise InputError("aoi", f"is not valid JSON: {e.msg}") from None
            precheck_vertices(geometry, limits)
        aoi = Aoi.create(name, geometry)
        if limits is not None:
            check_aoi(aoi.geometry, limits)
        key = self._key(aoi.name)
        if self.store.exists(key):
            existing = self.get(aoi.name)
            if existing.same_geometry(aoi):
                return existing, False
            if not replace:
                raise InputError(
                    "name", f"AOI {aoi.name!r} already exists with a different geometry"
                )
        feature = aoi.to_feature()
        feature["properties"]["registered"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.store.write_text(key, json.dumps(feature, indent=2))
        return aoi, True

    def get(self, name: str) -> Aoi:
        key = self._key(name)
        if not self.store.exists(key):
            raise InputError("aoi", f"AOI {name!r} is not registered")
        feature = json.loads(self.store.read_text(key))
        return Aoi.create(name, feature)

    def names(self) -> list[str]:
        return [
            n[: -len(".geojson")] for n in self.store.listdir(layout.AOIS) if n.endswith(".geojson")
        ]

    def list(self) -> list[Aoi]:
        return [self.get(n) for n in self.names()]

    def remove(self, name: str) -> bool:
        key = self._key(name)
        existed = self.store.exists(key)
        self.store.delete(key)
        return existed
