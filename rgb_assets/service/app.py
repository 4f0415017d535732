"""FastAPI front end: validate an AOI + time of interest, register it, launch partition runs.

Runs are launched through the Dagster webserver's GraphQL API (not in this process) so they are
queued, executed and recorded exactly like runs started from the UI, sensors or schedules.
Requests are stored as JSON under ``<storage root>/requests/`` and keyed by a hash of what was
asked, which makes a repeated POST return the same request without launching anything again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from rgb_assets.core.aoi import parse_geometry, validate_slug
from rgb_assets.core.catalogs import StaticCatalog, derived_collection
from rgb_assets.core.collections import get_collection
from rgb_assets.core.errors import InputError
from rgb_assets.core.layout import DERIVED_CATALOG
from rgb_assets.core.months import Month, months_between
from rgb_assets.partitions import aoi_partitions, check_month_in_range, partition_key
from rgb_assets.resources import StacSourceResource, StorageResource

REQUESTS_PREFIX = "requests"
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{16}$")
JOB_NAME = "monthly_composite_job"
GRAPHQL_TIMEOUT_S = 30.0

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
    bands: list[str] = Field(default_factory=lambda: ["red", "green", "blue"])
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
    def __init__(self, errors: list[InputError]) -> None:
        self.errors = errors


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


def geometry_name(geometry: dict[str, Any]) -> str:
    return "aoi-" + hashlib.sha256(_canonical(geometry).encode()).hexdigest()[:12]


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
        from rgb_assets.definitions import deployment_resources

        res = deployment_resources()
        storage = storage or res["storage"]  # type: ignore[assignment]
        stac = stac or res["stac"]  # type: ignore[assignment]
    assert storage is not None and stac is not None
    max_months = max_toi_months or int(os.getenv("RGB_ASSETS_MAX_TOI_MONTHS", "24"))
    spec = stac.spec()
    gql = GraphQL(graphql_url, location_name, repository_name)
    store = storage.store()
    lock = threading.Lock()
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
        return JSONResponse({"detail": detail}, status_code=422)

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
        if unknown or not body.bands:
            errors.append(
                InputError(
                    "bands",
                    f"unknown bands {unknown}; supported: {list(spec.bands)}"
                    if unknown
                    else "must not be empty",
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

    @app.post("/requests", status_code=202, response_model=RequestAccepted)
    def submit(body: CompositeRequest) -> dict[str, Any]:
        """Register the AOI, add its partition and launch one run per month (idempotent)."""
        geometry, months, bands, collection = validate(body)
        ident = _canonical(
            {
                "geometry": geometry,
                "months": [m.key for m in months],
                "toi": body.toi.strip(),
                "bands": bands,
                "collection": collection,
            }
        )
        request_id = hashlib.sha256(ident.encode()).hexdigest()[:16]
        with lock, store.lock(f"{REQUESTS_PREFIX}/.lock"):
            key = _request_key(request_id)
            created = not store.exists(key)
            if not created:
                record = json.loads(store.read_text(key))
            else:
                registry = storage.aois()
                try:
                    if body.name:
                        aoi, _ = registry.add(body.name, geometry)
                    else:
                        found = registry.find_by_geometry(geometry)
                        aoi = found or registry.add(geometry_name(geometry), geometry)[0]
                except InputError as e:
                    raise _Errors([e]) from None
                record = {
                    "request_id": request_id,
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
            # Launch what is not launched yet (all, or what a failed earlier attempt left).
            pending = [r for r in record["runs"] if not r["run_id"]]
            if pending:
                gql.add_partition(record["aoi"])
                for run in pending:
                    run["run_id"] = gql.launch(record["aoi"], Month.parse(run["partition"][-10:]))
                    _save(record)
        return {**record, "created": created}

    @app.get("/requests/{request_id}")
    def status(request_id: str) -> dict[str, Any]:
        """Per-partition run status; derived STAC item paths once a partition succeeded."""
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
                    store.uri(catalog.item_key(cid, record["aoi"], month, name))
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
