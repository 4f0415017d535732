"""FastAPI front end: validate an AOI + time of interest, register it, launch partition runs.

Runs are launched through the Dagster webserver's GraphQL API (not in this process) so they are
queued, executed and recorded exactly like runs started from the UI, sensors or schedules.
Requests are stored as JSON under ``<storage root>/requests/`` and keyed by a hash of what
determines the work (normalized geometry, covered months, collection), so a repeated POST returns
the same request; it re-registers the AOI (it may have been removed meanwhile) and relaunches only
partitions whose runs are missing, failed or were canceled.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
import shapely
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from shapely.geometry import mapping, shape

from rgb_assets.config import Settings
from rgb_assets.core.domain.aoi import Aoi, AoiRegistry, parse_geometry, validate_slug
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.months import Month, months_between
from rgb_assets.core.stac.catalog import StaticCatalog, derived_collection
from rgb_assets.core.storage.layout import DERIVED_CATALOG
from rgb_assets.core.storage.store import Store
from rgb_assets.partitions import aoi_partitions, check_month_in_range, partition_key
from rgb_assets.resources import StacSourceResource, StorageResource

REQUESTS_PREFIX = "requests"
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{16}$")
JOB_NAME = "monthly_composite_job"
GRAPHQL_TIMEOUT_S = 30.0
# Runs in these states (or gone from the instance) are launched again by a repeated request.
RELAUNCH_STATES = frozenset({"FAILURE", "CANCELED", "NOT_FOUND"})
# Coordinates are rounded to this many decimals (~0.1 mm) before hashing a geometry.
ID_DECIMALS = 9

ADD_PARTITION = """
mutation AddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name,
                      partitionKey: $key) {
    __typename
    ... on Error { message }
  }
}
"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status }
    ... on Error { message }
  }
}
"""


class CompositeRequest(BaseModel):
    """What to composite: an area, a time of interest, bands and the source collection."""

    aoi: Any = Field(description="GeoJSON Polygon/MultiPolygon geometry or a Feature holding one")
    toi: str = Field(
        description="ISO-8601 date interval, e.g. 2019-06-01/2019-09-30",
        examples=["2019-06-01/2019-09-30"],
    )
    bands: list[str] = Field(
        default_factory=lambda: ["red", "green", "blue"],
        description="Must be all of the collection's RGB bands (in any order): every AOI x month "
        "partition always gets the full RGB composite, shared by all requests for it",
    )
    collection: str | None = Field(default=None, description="Defaults to the deployment's")
    name: str | None = Field(default=None, description="AOI name; default aoi-<geometry hash>")


class RunRef(BaseModel):
    partition: str
    run_id: str | None


class RequestAccepted(BaseModel):
    request_id: str
    created: bool
    aoi: str
    months: list[str]
    runs: list[RunRef]


class _Errors(Exception):
    """Field-level errors answered as ``{"detail": [{"loc", "msg", "type"}]}``."""

    def __init__(self, errors: list[InputError], status_code: int = 422) -> None:
        self.errors = errors
        self.status_code = status_code


def _loc(field: str) -> list[str | int]:
    return ["body", *field.split(".")]


def _parse_day(text: str, field: str) -> date:
    try:
        if "T" in text:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(field, f"{text!r} is not an ISO-8601 date") from None


def parse_toi(toi: str, max_months: int) -> list[Month]:
    """``start/end`` (dates or datetimes, inclusive) → the months it touches, range-checked."""
    parts = toi.strip().split("/")
    if len(parts) != 2 or not all(parts):
        raise InputError("toi", f"{toi!r} is not an ISO-8601 interval (expected START/END)")
    start, end = (_parse_day(p, "toi") for p in parts)
    if end < start:
        raise InputError("toi", f"end {end} is before start {start}")
    months = months_between(Month.of(start), Month.of(end))
    if len(months) > max_months:
        raise InputError("toi", f"covers {len(months)} months; the limit is {max_months}")
    for m in months:
        check_month_in_range(m, "toi")
    return months


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


def geometry_name(geometry: dict[str, Any]) -> str:
    """Default AOI name: a hash of the normalized geometry."""
    canonical = normalize_geometry(geometry)
    canonical["coordinates"] = _rounded(canonical["coordinates"])
    return "aoi-" + hashlib.sha256(_canonical(canonical).encode()).hexdigest()[:12]


def request_id(geometry: dict[str, Any], months: list[Month], collection: str) -> str:
    """Id of the work asked for: the same area, months and collection give the same id.

    Bands are not part of it: every partition always gets the full RGB composite. The TOI's
    exact days and times are not either: only the months they cover are composited.
    """
    canonical = normalize_geometry(geometry)
    canonical["coordinates"] = _rounded(canonical["coordinates"])
    ident = _canonical(
        {
            "geometry": canonical,
            "months": sorted({m.key for m in months}),
            "collection": collection,
        }
    )
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def item_url(store: Store, key: str) -> str:
    """A URL for a stored file: ``file://`` for a local store, the store's own scheme otherwise."""
    return store.local_path(key).as_uri() if store.is_local else store.uri(key)


def resolve_aoi(
    registry: AoiRegistry, geometry: dict[str, Any], name: str | None, recorded: str | None
) -> Aoi:
    """The AOI a request uses, registered (again) if missing; conflicts raise 409 on ``name``.

    ``recorded`` is the AOI of an existing request with this id: it is re-registered when it
    was removed meanwhile. A name already holding another area, or an area already registered
    under another name, is a conflict rather than a second AOI (which would duplicate the work).
    """

    def conflict(problem: str) -> _Errors:
        return _Errors([InputError("name", problem)], status_code=409)

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
        return registry.add(wanted or geometry_name(geometry), geometry)[0]
    except InputError as e:
        raise _Errors([e], status_code=409 if e.field == "name" else 422) from None


class GraphQL:
    """Minimal Dagster GraphQL client: add a dynamic partition, launch a run, read run status."""

    def __init__(self, url: str, location: str, repository: str) -> None:
        self.url = url
        self.selector = {"repositoryLocationName": location, "repositoryName": repository}

    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            r = httpx.post(
                self.url,
                json={"query": query, "variables": variables},
                timeout=GRAPHQL_TIMEOUT_S,
            )
            r.raise_for_status()
            body = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise HTTPException(503, f"Dagster GraphQL at {self.url} unavailable: {e}") from None
        if body.get("errors"):
            raise HTTPException(502, f"Dagster GraphQL error: {body['errors'][0].get('message')}")
        return body["data"]

    def add_partition(self, key: str) -> None:
        data = self._post(
            ADD_PARTITION, {"selector": self.selector, "name": aoi_partitions.name, "key": key}
        )["addDynamicPartition"]
        ok = ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError")
        if data["__typename"] not in ok:
            raise HTTPException(502, f"addDynamicPartition: {data.get('message', data)}")

    def launch(self, aoi: str, month: Month) -> str:
        tags = {
            "dagster/partition": str(partition_key(aoi, month)),
            "dagster/partition/aoi": aoi,
            "dagster/partition/month": month.partition_key,
            "rgb_assets/trigger": "request_api",
        }
        params = {
            "selector": {**self.selector, "jobName": JOB_NAME},
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        data = self._post(LAUNCH_RUN, {"params": params})["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise HTTPException(502, f"launchRun {data['__typename']}: {data.get('message', '')}")
        return str(data["run"]["runId"])

    def status(self, run_id: str) -> str:
        data = self._post(RUN_STATUS, {"runId": run_id})["runOrError"]
        return str(data["status"]) if data["__typename"] == "Run" else "NOT_FOUND"


def create_app(
    graphql_url: str,
    *,
    storage: StorageResource | None = None,
    stac: StacSourceResource | None = None,
    location_name: str = "rgb_assets",
    repository_name: str = "__repository__",
    max_toi_months: int | None = None,
) -> FastAPI:
    """The request API bound to one Dagster webserver and one deployment's storage."""
    if storage is None or stac is None:
        from rgb_assets.definitions import pipeline_resources

        res = pipeline_resources(Settings.from_env())
        storage = storage or res["storage"]  # type: ignore[assignment]
        stac = stac or res["stac"]  # type: ignore[assignment]
    assert storage is not None and stac is not None
    max_months = max_toi_months or Settings.from_env().max_toi_months
    spec = stac.spec()
    gql = GraphQL(graphql_url, location_name, repository_name)
    store = storage.store()
    lock = threading.Lock()  # the request records and the AOI registry
    guards: dict[str, threading.Lock] = {}  # one per request id, see request_guard
    guards_lock = threading.Lock()
    parsed = urlparse(graphql_url)

    app = FastAPI(
        title="rgb-assets request API",
        description=__doc__,
        version="0.1.0",
    )

    @app.exception_handler(_Errors)
    def _errors(_: Any, exc: _Errors) -> JSONResponse:
        detail = [
            {"loc": _loc(e.field), "msg": e.problem, "type": "value_error"} for e in exc.errors
        ]
        return JSONResponse({"detail": detail}, status_code=exc.status_code)

    def validate(body: CompositeRequest) -> tuple[dict[str, Any], list[Month], list[str], str]:
        errors: list[InputError] = []
        geometry: dict[str, Any] = {}
        months: list[Month] = []
        try:
            geometry = parse_geometry(body.aoi, "aoi")
        except InputError as e:
            errors.append(e)
        try:
            months = parse_toi(body.toi, max_months)
        except InputError as e:
            errors.append(e)
        collection = body.collection or spec.key
        try:
            requested = get_collection(collection)
            if requested.key != spec.key:
                raise InputError(
                    "collection", f"{collection!r} is not this deployment's collection {spec.key!r}"
                )
        except InputError as e:
            errors.append(e)
        unknown = [b for b in body.bands if b not in spec.bands]
        missing = [b for b in spec.bands if b not in body.bands]
        if unknown or not body.bands:
            errors.append(
                InputError(
                    "bands",
                    f"unknown bands {unknown}; supported: {list(spec.bands)}"
                    if unknown
                    else "must not be empty",
                )
            )
        elif missing:
            # A partition's outputs are shared by every request for it, so a request cannot
            # choose a subset; accepting one and making RGB anyway would mislead.
            errors.append(
                InputError(
                    "bands",
                    f"missing {missing}: every AOI x month always gets the full composite of "
                    f"{list(spec.bands)}; omit bands or list all of them",
                )
            )
        if body.name is not None:
            try:
                validate_slug(body.name, "name")
            except InputError as e:
                errors.append(e)
        if errors:
            raise _Errors(errors)
        return geometry, months, sorted(set(body.bands)), spec.key

    def _request_key(request_id: str) -> str:
        return f"{REQUESTS_PREFIX}/{request_id}.json"

    def _save(record: dict[str, Any]) -> None:
        store.write_text(_request_key(record["request_id"]), json.dumps(record, indent=2))

    @contextmanager
    def request_guard(request_id: str) -> Iterator[None]:
        """One submit per request id at a time, in this process and (local store) across them.

        Held during the GraphQL calls, so two identical concurrent POSTs cannot both launch,
        while requests with other ids proceed in parallel.
        """
        with guards_lock:
            guard = guards.setdefault(request_id, threading.Lock())
        with guard, store.lock(f"{REQUESTS_PREFIX}/.{request_id}.lock"):
            yield

    @app.post("/requests", status_code=202, response_model=RequestAccepted)
    def submit(body: CompositeRequest) -> dict[str, Any]:
        """Register the AOI, add its partition and launch one run per month (idempotent)."""
        geometry, months, bands, collection = validate(body)
        rid = request_id(geometry, months, collection)
        key = _request_key(rid)
        with request_guard(rid):
            # The shared lock covers only the record and the registry (quick file operations).
            with lock, store.lock(f"{REQUESTS_PREFIX}/.lock"):
                created = not store.exists(key)
                record = None if created else json.loads(store.read_text(key))
                aoi = resolve_aoi(
                    storage.aois(), geometry, body.name, record["aoi"] if record else None
                )
                if record is None:
                    record = {
                        "request_id": rid,
                        "aoi": aoi.name,
                        "toi": body.toi.strip(),
                        "bands": bands,
                        "collection": collection,
                        "months": [m.key for m in months],
                        "created": datetime.now(UTC).isoformat(timespec="seconds"),
                        "runs": [
                            {"partition": str(partition_key(aoi.name, m)), "run_id": None}
                            for m in months
                        ],
                    }
                    _save(record)
            # The partition may have been removed with the AOI (`rgb-assets aoi remove`).
            gql.add_partition(record["aoi"])
            for run in record["runs"]:
                if run["run_id"] and gql.status(run["run_id"]) not in RELAUNCH_STATES:
                    continue
                run["run_id"] = gql.launch(record["aoi"], Month.parse(run["partition"][-10:]))
                with lock:
                    _save(record)
        return {**record, "created": created}

    @app.get("/requests/{request_id}")
    def status(request_id: str) -> dict[str, Any]:
        """Per-partition run status; derived STAC item URLs once a partition succeeded."""
        if not REQUEST_ID_RE.match(request_id) or not store.exists(_request_key(request_id)):
            raise HTTPException(404, f"request {request_id!r} not found")
        record = json.loads(store.read_text(_request_key(request_id)))
        catalog = StaticCatalog(store, DERIVED_CATALOG, "", "")
        cid = derived_collection(get_collection(record["collection"])).id
        runs = []
        for run in record["runs"]:
            month = Month.parse(run["partition"][-10:])
            state = gql.status(run["run_id"]) if run["run_id"] else "NOT_LAUNCHED"
            items: list[str] = []
            if state == "SUCCESS":
                folder = catalog.partition_dir(cid, record["aoi"], month)
                items = [
                    item_url(store, catalog.item_key(cid, record["aoi"], month, name))
                    for name in store.listdir(folder)
                    if store.exists(catalog.item_key(cid, record["aoi"], month, name))
                ]
            runs.append({**run, "month": month.key, "status": state, "items": items})
        states = {r["status"] for r in runs}
        if states == {"SUCCESS"}:
            overall = "done"
        elif states & {"FAILURE", "CANCELED", "NOT_FOUND"}:
            overall = "failed"
        else:
            overall = "running"
        return {
            "request_id": request_id,
            "aoi": record["aoi"],
            "toi": record["toi"],
            "status": overall,
            "runs": runs,
        }

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "dagster": f"{parsed.scheme}://{parsed.netloc}"}

    return app
