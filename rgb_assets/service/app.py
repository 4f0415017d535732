"""FastAPI front end: validate an AOI + time of interest, register it, launch partition runs.

Runs are launched through the Dagster webserver's GraphQL API (not in this process) so they are
queued, executed and recorded exactly like runs started from the UI, sensors or schedules.
Requests are stored as JSON under ``<storage root>/requests/`` and keyed by a hash of what
determines the work (normalized geometry, covered months, collection), so a repeated POST returns
the same request; it re-registers the AOI (it may have been removed meanwhile) and launches only
partitions that have no live run. Each run carries the request id as a tag, and the request's
runs are looked up by that tag before anything is launched, so timeouts and retries never
launch a partition twice. ``POST /requests?dry_run=true`` answers the pre-flight estimate.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from rgb_assets.config import Settings
from rgb_assets.core.domain.aoi import Aoi, parse_geometry, validate_slug
from rgb_assets.core.domain.collection_specs import CollectionSpec, get_collection
from rgb_assets.core.domain.errors import InputError, RgbAssetsError
from rgb_assets.core.domain.limits import Limits, estimate_partition, precheck_vertices
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.source import SearchRequest, StacSource
from rgb_assets.core.storage.layout import REQUESTS
from rgb_assets.definitions import pipeline_resources
from rgb_assets.partitions import aoi_partitions, partition_key
from rgb_assets.resources import StacSourceResource, StorageResource
from rgb_assets.service import answers
from rgb_assets.service.dagster_client import (
    RELAUNCH_STATES,
    DagsterClient,
    DagsterRefused,
    DagsterUnavailable,
)
from rgb_assets.service.docs import install_offline_docs
from rgb_assets.service.models import (
    CompositeRequest,
    DryRun,
    MonthEstimate,
    RequestAccepted,
    RequestRecord,
    RequestStatus,
    RunRef,
    RunState,
)
from rgb_assets.service.requests import (
    REQUEST_ID_RE,
    RequestErrors,
    RequestStore,
    check_bands,
    geometry_name,
    parse_toi,
    request_id,
    resolve_aoi,
)
from rgb_assets.service.viewer import install_viewer

REQUEST_TAG = "rgb_assets/request"


def _loc(field: str) -> list[str | int]:
    return ["body", *field.split(".")]


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes``, 411 for bodies of unknown length.

    Checked from ``Content-Length`` before a byte of the body is read, so a 30 MB body costs
    nothing; a chunked body without length could not be bounded without buffering it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            problem = None
            if length is None:
                if headers.get(b"transfer-encoding"):
                    problem = (411, "a request body needs a Content-Length header")
            elif not length.isdigit():
                problem = (400, "invalid Content-Length")
            elif int(length) > self.max_bytes:
                problem = (413, f"request body of {int(length)} bytes exceeds {self.max_bytes}")
            if problem is not None:
                response = JSONResponse({"detail": problem[1]}, status_code=problem[0])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _bearer_auth(token: str | None) -> Any:
    """A dependency requiring ``Authorization: Bearer <token>`` (constant-time compare)."""
    scheme = Depends(HTTPBearer(auto_error=False, description="RGB_ASSETS_API_TOKEN"))

    def check(credentials: HTTPAuthorizationCredentials | None = scheme) -> None:
        if token is None:
            return
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(403, "invalid bearer token")

    return check


def _validate(
    body: CompositeRequest, spec: CollectionSpec, limits: Limits
) -> tuple[dict[str, Any], list[Month], list[str]]:
    """Every field checked, all errors reported together; then the costs (AOI and grid)."""
    errors: list[InputError] = []
    geometry: dict[str, Any] = {}
    months: list[Month] = []
    try:
        precheck_vertices(body.aoi, limits)
        geometry = parse_geometry(body.aoi, "aoi")
    except InputError as e:
        errors.append(e)
    try:
        months = parse_toi(body.toi, limits.max_toi_months)
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
    bands: list[str] = []
    try:
        bands = check_bands(body.bands, spec.bands)
    except InputError as e:
        errors.append(e)
    if body.name is not None:
        try:
            validate_slug(body.name, "name")
        except InputError as e:
            errors.append(e)
    if errors:
        raise RequestErrors(errors)
    try:
        estimate_partition(geometry, spec.key, spec.resolution, None, limits)
    except InputError as e:
        raise RequestErrors([e]) from None
    return geometry, months, bands


def create_app(
    settings: Settings,
    *,
    location_name: str = "rgb_assets",
    repository_name: str = "__repository__",
    graphql_timeout_s: int = 30,
) -> FastAPI:
    """The request API bound to one Dagster webserver and one deployment's storage."""
    resources = pipeline_resources(settings)
    storage = resources["storage"]
    stac = resources["stac"]
    assert isinstance(storage, StorageResource) and isinstance(stac, StacSourceResource)
    limits = settings.limits
    spec = stac.spec()
    dagster = DagsterClient(
        settings.dagster_graphql,
        location=location_name,
        repository=repository_name,
        timeout_s=graphql_timeout_s,
    )
    store = storage.store()
    requests = RequestStore(store)
    auth = _bearer_auth(settings.api_token)

    app = FastAPI(
        title="rgb-assets request API",
        description=__doc__,
        version="0.2.0",
        docs_url=None,  # served offline by install_offline_docs
        redoc_url=None,
    )
    install_offline_docs(app)
    install_viewer(app, storage, spec)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestErrors)
    def _errors(_: Any, exc: RequestErrors) -> JSONResponse:
        detail = [
            {"loc": _loc(e.field), "msg": e.problem, "type": "value_error"} for e in exc.errors
        ]
        return JSONResponse({"detail": detail}, status_code=exc.status_code)

    @app.exception_handler(DagsterUnavailable)
    def _unavailable(_: Any, exc: DagsterUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(DagsterRefused)
    def _refused(_: Any, exc: DagsterRefused) -> JSONResponse:
        return JSONResponse({"detail": f"Dagster GraphQL error: {exc}"}, status_code=502)

    def estimate(geometry: dict[str, Any], months: list[Month]) -> list[MonthEstimate]:
        """Search each month and estimate it; a source failure is a 503, limits a 422."""
        aoi = Aoi(geometry_name(geometry), geometry)
        try:
            source: StacSource = stac.open()
        except RgbAssetsError as e:
            raise HTTPException(503, f"STAC source unavailable: {e}") from None
        out = []
        for month in months:
            try:
                found = source.search(
                    SearchRequest(source.collection_id(spec), aoi, month, 80.0, spec.platforms)
                )
            except RgbAssetsError as e:
                raise HTTPException(503, f"STAC source unavailable: {e}") from None
            try:
                est = estimate_partition(geometry, spec.key, spec.resolution, len(found), limits)
            except InputError as e:
                raise RequestErrors([InputError(f"toi.{month.key}.{e.field}", e.problem)]) from None
            out.append(MonthEstimate(month=month.key, **est.as_dict()))
        return out

    def adopt_lost_launch(pk: str, live_runs: Any) -> str:
        """The run a launch without answer created, if it appears within one more timeout."""
        deadline = time.monotonic() + graphql_timeout_s
        while True:
            found = live_runs()
            if pk in found:
                return str(found[pk])
            if time.monotonic() >= deadline:
                raise DagsterUnavailable(
                    f"Dagster GraphQL at {dagster.url} did not confirm the launch of {pk}; "
                    "retry the request (it will not launch twice once the run is visible)"
                )
            time.sleep(0.5)

    def launch_missing(record: RequestRecord, partitions: dict[str, Month]) -> dict[str, str]:
        """Partition → run id: live runs of this request adopted, the others launched once.

        A launch whose answer is lost (timeout, dropped connection) may still have created
        the run, so before reporting 503 the request's runs are looked up again by tag. Each
        launch is recorded at once (atomic replace), so a crash loses no run id.
        """
        rid, aoi = record.request_id, record.aoi

        def live_runs() -> dict[str, str]:
            found: dict[str, str] = {}
            for run in dagster.runs_with_tags({REQUEST_TAG: rid}):  # newest first
                pk = run.tags.get("dagster/partition")
                if pk in partitions and pk not in found and run.status not in RELAUNCH_STATES:
                    found[pk] = run.run_id
            return found

        runs = live_runs()
        for pk, month in partitions.items():
            if pk in runs:
                continue
            tags = {
                "dagster/partition": pk,
                "dagster/partition/aoi": aoi,
                "dagster/partition/month": month.partition_key,
                "rgb_assets/trigger": "request_api",
                REQUEST_TAG: rid,
            }
            try:
                runs[pk] = dagster.launch(tags)
            except DagsterUnavailable:
                runs[pk] = adopt_lost_launch(pk, live_runs)
            record.runs[pk] = runs[pk]
            with requests.registry_lock():
                requests.save(record)
        return runs

    @app.post(
        "/requests",
        status_code=202,
        response_model=RequestAccepted | DryRun,
        dependencies=[Depends(auth)],
    )
    def submit(
        body: CompositeRequest,
        dry_run: bool = Query(False, description="Only validate and estimate; change nothing"),
    ) -> Any:
        """Register the AOI, add its partition and launch one run per month (idempotent)."""
        geometry, months, bands = _validate(body, spec, limits)
        rid = request_id(geometry, months, spec.key)
        if dry_run:
            estimates = estimate(geometry, months)
            answer = DryRun(
                request_id=rid,
                aoi=body.name or geometry_name(geometry),
                months=[m.key for m in months],
                estimates=estimates,
                total_scenes=sum(e.scenes or 0 for e in estimates),
                total_bytes_to_archive=sum(e.bytes_to_archive or 0 for e in estimates),
                max_memory_bytes=max((e.memory_bytes or 0 for e in estimates), default=0),
            )
            return JSONResponse(answer.model_dump(), status_code=200)
        with requests.guard(rid):
            # The shared lock covers only the record and the registry (quick file operations).
            with requests.registry_lock():
                record = requests.get(rid)
                created = record is None
                aoi = resolve_aoi(
                    storage.aois(), geometry, body.name, record.aoi if record else None, limits
                )
                if record is None:
                    record = requests.new_record(rid, aoi.name, body.toi, bands, spec.key, months)
                    requests.save(record)
            # The partition may have been removed with the AOI (`rgb-assets aoi remove`).
            dagster.add_partition(aoi_partitions.name, record.aoi)
            partitions = {
                str(partition_key(record.aoi, Month.parse(m))): Month.parse(m)
                for m in record.months
            }
            runs = launch_missing(record, partitions)
            if runs != record.runs:
                record.runs = runs
                with requests.registry_lock():
                    requests.save(record)
        return RequestAccepted(
            request_id=rid,
            created=created,
            aoi=record.aoi,
            months=record.months,
            runs=[
                RunRef(partition=pk, month=m.key, run_id=runs[pk]) for pk, m in partitions.items()
            ],
        )

    def _base(request: Request) -> str:
        """Where clients reach this service: the public URL, else the URL they used."""
        return storage.public_url or str(request.base_url).rstrip("/")

    @app.get(
        "/requests",
        response_model=list[answers.RequestSummary],
        dependencies=[Depends(auth)],
    )
    def list_requests(request: Request) -> list[answers.RequestSummary]:
        """Every stored request, newest first."""
        out = []
        for name in store.listdir(REQUESTS):
            record = requests.get(name.removesuffix(".json")) if name.endswith(".json") else None
            if record is None:
                continue
            out.append(
                answers.RequestSummary(
                    request_id=record.request_id,
                    aoi=record.aoi,
                    toi=record.toi,
                    months=record.months,
                    created=record.created,
                    url=f"{_base(request)}/requests/{record.request_id}",
                )
            )
        return sorted(out, key=lambda r: r.created, reverse=True)

    @app.get(
        "/requests/{request_id}",
        response_model=RequestStatus,
        response_model_exclude_none=True,
        dependencies=[Depends(auth)],
    )
    def status(request_id: str, request: Request) -> RequestStatus:
        """Per partition: the run and its page in the Dagster UI, its status, the failed step
        and error on failure, the products' URLs over HTTP (item, COGs, thumbnail, viewer,
        tiles) on success."""
        record = requests.get(request_id) if REQUEST_ID_RE.match(request_id) else None
        if record is None:
            raise HTTPException(404, f"request {request_id!r} not found")
        base = _base(request)
        runs = []
        for key in record.months:
            month = Month.parse(key)
            pk = str(partition_key(record.aoi, month))
            run_id = record.runs.get(pk)
            state = dagster.status(run_id) if run_id else "NOT_LAUNCHED"
            run = RunState(
                partition=pk,
                month=month.key,
                run_id=run_id,
                run_url=answers.run_url(dagster.url, run_id) if run_id else None,
                status=state,
            )
            if state == "FAILURE" and run_id:
                run.failure = answers.run_failure(dagster, run_id)
            elif state == "SUCCESS" and run_id:
                run.outcome = answers.run_outcome(dagster, run_id)
                run.links, run.items = answers.product_links(store, base, spec, record.aoi, month)
            runs.append(run)
        states = {r.status for r in runs}
        if states == {"SUCCESS"}:
            overall = "done"
        elif states & {"FAILURE", "CANCELED", "NOT_FOUND"}:
            overall = "failed"
        else:
            overall = "running"
        return RequestStatus(
            request_id=request_id, aoi=record.aoi, toi=record.toi, status=overall, runs=runs
        )

    @app.get("/health", response_model=answers.Health)
    def health() -> answers.Health:
        """Whether Dagster's GraphQL answers (``degraded``: requests cannot launch runs)."""
        return answers.health(dagster)

    return app
