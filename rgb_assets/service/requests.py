"""Requests: their ids, geometry normalization, validation of times of interest, and the store.

A request id hashes what determines the work (normalized geometry, covered months, collection),
so the same work asked twice, however it is written, is one request. Records live as JSON under
``<storage root>/requests/`` and are replaced atomically (the store writes a temporary sibling
and renames it), so a crash never leaves a half-written record.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from typing import Any

import shapely
from shapely.geometry import mapping, shape

from rgb_assets.core.domain.aoi import Aoi, AoiRegistry
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.limits import Limits
from rgb_assets.core.domain.months import Month, months_between
from rgb_assets.core.storage.store import Store
from rgb_assets.partitions import check_month_in_range
from rgb_assets.service.models import RequestRecord

REQUESTS_PREFIX = "requests"
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{16}$")
# Coordinates are rounded to this many decimals (~0.1 mm) before hashing a geometry.
ID_DECIMALS = 9


class RequestErrors(Exception):
    """Field-level errors answered as ``{"detail": [{"loc", "msg", "type"}]}``."""

    def __init__(self, errors: list[InputError], status_code: int = 422) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors
        self.status_code = status_code


def _parse_instant(text: str, field: str, *, end: bool) -> datetime:
    """A date or datetime as a UTC instant; a date alone is its first (start) or last (end)
    instant, a datetime without offset is taken as UTC."""
    try:
        if "T" in text or " " in text.strip():
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
            return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(field, f"{text!r} is not an ISO-8601 date or datetime") from None
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


def parse_toi(toi: str, max_months: int) -> list[Month]:
    """``start/end`` (dates or datetimes, inclusive, compared in UTC) → the months it touches."""
    parts = toi.strip().split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise InputError("toi", f"{toi!r} is not an ISO-8601 interval (expected START/END)")
    start = _parse_instant(parts[0], "toi", end=False)
    end = _parse_instant(parts[1], "toi", end=True)
    if end < start:
        raise InputError(
            "toi",
            f"end {end.isoformat()} is before start {start.isoformat()} (both in UTC)",
        )
    months = months_between(Month.of(start), Month.of(end))
    if len(months) > max_months:
        raise InputError("toi", f"covers {len(months)} months; the limit is {max_months}")
    for m in months:
        check_month_in_range(m, "toi")
    return months


def check_bands(bands: list[str], supported: tuple[str, ...]) -> list[str]:
    """All of the collection's bands, each once (a partition is always the full composite)."""
    dupes = sorted({b for b in bands if bands.count(b) > 1})
    unknown = [b for b in bands if b not in supported]
    missing = [b for b in supported if b not in bands]
    if not bands:
        raise InputError("bands", "must not be empty")
    if dupes:
        raise InputError("bands", f"{dupes} listed more than once; list each band once")
    if unknown:
        raise InputError("bands", f"unknown bands {unknown}; supported: {list(supported)}")
    if missing:
        # A partition's outputs are shared by every request for it, so a request cannot
        # choose a subset; accepting one and making RGB anyway would mislead.
        raise InputError(
            "bands",
            f"missing {missing}: every AOI x month always gets the full composite of "
            f"{list(supported)}; omit bands or list all of them",
        )
    return sorted(bands)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _rounded(coords: Any) -> Any:
    if isinstance(coords, (list, tuple)):
        return [_rounded(c) for c in coords]
    return round(float(coords), ID_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def normalize_geometry(geometry: dict[str, Any]) -> dict[str, Any]:
    """Canonical form of a validated area, so equal areas written differently hash the same.

    Ring orientation and start vertex, polygon order, repeated vertices and a one-part
    MultiPolygon versus a Polygon do not change what is composited, so they must not change ids.
    """
    geom = shapely.remove_repeated_points(shape(geometry))
    if geom.geom_type == "MultiPolygon" and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    out = mapping(shapely.normalize(geom))
    return {"type": out["type"], "coordinates": json.loads(json.dumps(out["coordinates"]))}


def same_area(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal after normalization (tolerance 1e-9 degrees), whatever vertex order each uses."""
    na, nb = (shapely.normalize(shape(normalize_geometry(g))) for g in (a, b))
    return bool(shapely.equals_exact(na, nb, tolerance=1e-9))


def _geometry_digest(geometry: dict[str, Any]) -> str:
    canonical = normalize_geometry(geometry)
    canonical["coordinates"] = _rounded(canonical["coordinates"])
    return _canonical(canonical)


def geometry_name(geometry: dict[str, Any]) -> str:
    """Default AOI name: a hash of the normalized geometry."""
    return "aoi-" + hashlib.sha256(_geometry_digest(geometry).encode()).hexdigest()[:12]


def request_id(geometry: dict[str, Any], months: list[Month], collection: str) -> str:
    """Id of the work asked for: the same area, months and collection give the same id.

    Bands are not part of it: every partition always gets the full RGB composite. The TOI's
    exact days and times are not either: only the months they cover are composited.
    """
    ident = _canonical(
        {
            "geometry": json.loads(_geometry_digest(geometry)),
            "months": sorted({m.key for m in months}),
            "collection": collection,
        }
    )
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def item_url(store: Store, key: str) -> str:
    """A URL for a stored file: ``file://`` for a local store, the store's own scheme otherwise."""
    return store.local_path(key).as_uri() if store.is_local else store.uri(key)


def resolve_aoi(
    registry: AoiRegistry,
    geometry: dict[str, Any],
    name: str | None,
    recorded: str | None,
    limits: Limits | None = None,
) -> Aoi:
    """The AOI a request uses, registered (again) if missing; conflicts raise 409 on ``name``.

    ``recorded`` is the AOI of an existing request with this id: it is re-registered when it
    was removed meanwhile. A name already holding another area, or an area already registered
    under another name, is a conflict rather than a second AOI (which would duplicate the work).
    """

    def conflict(problem: str) -> RequestErrors:
        return RequestErrors([InputError("name", problem)], status_code=409)

    if recorded is not None and name is not None and name != recorded:
        raise conflict(
            f"this area and time of interest were already requested as AOI {recorded!r}; "
            f"omit name or use {recorded!r}"
        )
    wanted = recorded or name
    if wanted is not None and wanted in registry.names():
        existing = registry.get(wanted)
        if not same_area(existing.geometry, geometry):
            raise conflict(f"AOI {wanted!r} already exists with a different geometry")
        return existing
    if recorded is None:
        same = next((a for a in registry.list() if same_area(a.geometry, geometry)), None)
        if same is not None and name is None:
            return same
        if same is not None:
            raise conflict(
                f"this geometry is already registered as AOI {same.name!r}; "
                f"omit name or use {same.name!r}"
            )
    try:
        return registry.add(wanted or geometry_name(geometry), geometry, limits=limits)[0]
    except InputError as e:
        raise RequestErrors([e], status_code=409 if e.field == "name" else 422) from None


class RequestStore:
    """Request records in a store, with the locks that keep concurrent submits consistent.

    ``guard(request_id)`` serialises submits of one request (threads of this process, and other
    processes on a local store through ``flock``), so two identical POSTs cannot both launch;
    ``registry_lock()`` covers the short read-modify-write of records and the AOI registry.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._guards: dict[str, threading.Lock] = {}
        self._guards_lock = threading.Lock()

    @staticmethod
    def key(rid: str) -> str:
        return f"{REQUESTS_PREFIX}/{rid}.json"

    def get(self, rid: str) -> RequestRecord | None:
        if not REQUEST_ID_RE.match(rid) or not self.store.exists(self.key(rid)):
            return None
        return RequestRecord.model_validate_json(self.store.read_text(self.key(rid)))

    def save(self, record: RequestRecord) -> None:
        """Replace the record atomically (temporary sibling + rename, or one object PUT)."""
        self.store.write_text(self.key(record.request_id), record.model_dump_json(indent=2))

    @contextmanager
    def guard(self, rid: str) -> Iterator[None]:
        with self._guards_lock:
            guard = self._guards.setdefault(rid, threading.Lock())
        with guard, self.store.lock(f"{REQUESTS_PREFIX}/.{rid}.lock"):
            yield

    @contextmanager
    def registry_lock(self) -> Iterator[None]:
        with self._lock, self.store.lock(f"{REQUESTS_PREFIX}/.lock"):
            yield

    @staticmethod
    def new_record(
        rid: str, aoi: str, toi: str, bands: list[str], collection: str, months: list[Month]
    ) -> RequestRecord:
        return RequestRecord(
            request_id=rid,
            aoi=aoi,
            toi=toi.strip(),
            bands=bands,
            collection=collection,
            months=[m.key for m in months],
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
