"""Typed request and response bodies of the request API, and the stored request record.

Request bodies forbid unknown fields: a misspelt ``band`` or a stray ``foo`` is a 422 naming
the field, not silently ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CompositeRequest(BaseModel):
    """What to composite: an area, a time of interest, bands and the source collection."""

    model_config = ConfigDict(extra="forbid")

    aoi: Any = Field(description="GeoJSON Polygon/MultiPolygon geometry or a Feature holding one")
    toi: str = Field(
        description="ISO-8601 interval, dates or datetimes, compared in UTC, e.g. "
        "2019-06-01/2019-09-30",
        examples=["2019-06-01/2019-09-30"],
    )
    bands: list[str] = Field(
        default_factory=lambda: ["red", "green", "blue"],
        description="Must be all of the collection's RGB bands (in any order, each once): every "
        "AOI x month partition always gets the full RGB composite, shared by all requests for it",
    )
    collection: str | None = Field(default=None, description="Defaults to the deployment's")
    name: str | None = Field(default=None, description="AOI name; default aoi-<geometry hash>")


class RunRef(BaseModel):
    """One launched partition run (a run id is never null: unlaunched runs are not listed)."""

    partition: str
    month: str
    run_id: str


class RequestAccepted(BaseModel):
    request_id: str
    created: bool
    aoi: str
    months: list[str]
    runs: list[RunRef]


class MonthEstimate(BaseModel):
    """Pre-flight estimate of one AOI x month (see ``core.domain.limits.estimate_partition``)."""

    month: str
    scenes: int | None
    crs: str
    resolution: float
    output_shape: list[int]
    output_pixels: int
    bytes_to_archive: int | None
    memory_bytes: int | None
    aoi_vertices: int
    aoi_area_km2: float


class DryRun(BaseModel):
    """What a request would do; nothing is registered, stored or launched."""

    request_id: str
    dry_run: bool = True
    aoi: str
    months: list[str]
    estimates: list[MonthEstimate]
    total_scenes: int
    total_bytes_to_archive: int
    max_memory_bytes: int


class ProductLinks(BaseModel):
    """A succeeded partition's products, over HTTP from this service."""

    item: str | None = Field(description="Derived STAC item (JSON)")
    cog: str = Field(description="Analysis COG: float32 reflectance bands + clear count")
    visual: str = Field(description="8-bit RGB COG")
    thumbnail: str = Field(description="PNG thumbnail")
    viewer: str = Field(description="The map viewer on this AOI and month")
    tiles: str = Field(description="XYZ tile URL template of the visual composite")


class RunFailure(BaseModel):
    """Where and why a run failed."""

    step: str | None = Field(description="The failed step (asset), None: the run itself")
    message: str


class RunState(BaseModel):
    partition: str
    month: str
    run_id: str | None = Field(default=None, description="Absent until the run is launched")
    run_url: str | None = Field(default=None, description="The run in the Dagster UI")
    status: str
    failure: RunFailure | None = Field(default=None, description="On failure: step and error")
    outcome: str | None = Field(
        default=None,
        description="On success: 'published', 'no data' (no clear scene this month; a product "
        "published before stays) or 'blocked' (a quality check kept the composite unpublished)",
    )
    links: ProductLinks | None = Field(default=None, description="On success: products (HTTP)")
    items: list[str] = Field(default_factory=list, description="Derived STAC item URLs")


class RequestStatus(BaseModel):
    """A request's progress: ``done`` when every partition succeeded."""

    request_id: str
    aoi: str
    toi: str
    status: str
    runs: list[RunState]


class RequestRecord(BaseModel):
    """What ``requests/<id>.json`` holds; ``runs`` maps partition key → launched run id."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    aoi: str
    toi: str
    bands: list[str]
    collection: str
    months: list[str]
    created: str
    runs: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _legacy_runs(cls, data: Any) -> Any:
        """Records written before 2025 listed ``[{partition, run_id}]`` with null ids."""
        if isinstance(data, dict) and isinstance(data.get("runs"), list):
            runs = {r["partition"]: r["run_id"] for r in data["runs"] if r.get("run_id")}
            data = {**data, "runs": runs}
        return data
