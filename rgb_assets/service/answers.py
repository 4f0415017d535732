"""What ``GET /requests``, ``GET /requests/{id}`` and ``/health`` add for clients: the run in
the Dagster UI, where and why a run failed, the products over HTTP and the map viewer.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel

from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import read_product
from rgb_assets.core.products.web import store_url, tile_url, viewer_url
from rgb_assets.core.stac.catalog import derived_collection
from rgb_assets.core.storage.layout import DERIVED_CATALOG, PartitionPaths
from rgb_assets.core.storage.store import Store
from rgb_assets.service.dagster_client import DagsterClient, DagsterRefused, DagsterUnavailable
from rgb_assets.service.models import ProductLinks, RunFailure

RUN_FAILURE = """
query RunFailure($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent {
          stepKey
          error { message errorChain { error { message } } }
        }
        ... on RunFailureEvent { message }
      }
    }
  }
}
"""
RUN_OUTCOME = """
query RunOutcome($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MaterializationEvent {
          stepKey
          metadataEntries { label ... on TextMetadataEntry { text } }
        }
      }
    }
  }
}
"""
HEALTH = "{ version }"
#: The step whose ``outcome`` metadata says what a run made of its month.
COMPOSITE_STEP = "monthly_composite"


class RequestSummary(BaseModel):
    """One stored request, as ``GET /requests`` lists it."""

    request_id: str
    aoi: str
    toi: str
    months: list[str]
    created: str
    url: str


class DagsterHealth(BaseModel):
    url: str
    graphql: Literal["ok", "unreachable"]
    version: str | None = None
    error: str | None = None


class Health(BaseModel):
    """``ok`` when Dagster's GraphQL answers, else ``degraded`` (requests cannot launch)."""

    status: Literal["ok", "degraded"]
    dagster: DagsterHealth


def dagster_ui(graphql_url: str) -> str:
    """The Dagster UI's base URL from its GraphQL endpoint."""
    parsed = urlparse(graphql_url)
    path = parsed.path.removesuffix("/graphql").rstrip("/")
    return f"{parsed.scheme}://{parsed.netloc}{path}"


def run_url(graphql_url: str, run_id: str) -> str:
    return f"{dagster_ui(graphql_url)}/runs/{run_id}"


def _error_message(error: dict) -> str:
    """The error's own cause when Dagster wrapped it ("Error occurred while executing op")."""
    chain = [c.get("error") or {} for c in error.get("errorChain") or []]
    causes = [c.get("message", "").strip() for c in chain if c.get("message")]
    return causes[-1] if causes else error.get("message", "").strip()


def run_failure(dagster: DagsterClient, run_id: str) -> RunFailure:
    """The first failed step and its error (or the run's own failure message)."""
    data = dagster._execute("logsForRun", RUN_FAILURE, {"runId": run_id})["logsForRun"]
    events = data.get("events") or []
    for e in events:
        if e["__typename"] == "ExecutionStepFailureEvent":
            return RunFailure(step=e["stepKey"], message=_error_message(e.get("error") or {}))
    for e in events:
        if e["__typename"] == "RunFailureEvent":
            return RunFailure(step=None, message=e.get("message") or "run failed")
    return RunFailure(step=None, message="run failed (no failure event recorded)")


def run_outcome(dagster: DagsterClient, run_id: str) -> str | None:
    """What a successful run made of its month: ``published``, ``no data`` (nothing to
    composite: a previously published product, if any, stays) or ``blocked`` (a quality check
    kept the new composite unpublished), from the composite step's materialization."""
    data = dagster._execute("logsForRun", RUN_OUTCOME, {"runId": run_id})["logsForRun"]
    for e in data.get("events") or []:
        if e["__typename"] == "MaterializationEvent" and e.get("stepKey") == COMPOSITE_STEP:
            for entry in e.get("metadataEntries") or []:
                if entry.get("label") == "outcome":
                    return entry.get("text")
    return None


def product_links(
    store: Store, base: str, spec: CollectionSpec, aoi: str, month: Month
) -> tuple[ProductLinks | None, list[str]]:
    """The published product's URLs under ``base`` (None when nothing is published)."""
    paths = PartitionPaths(spec.key, aoi, month)
    product = read_product(store, paths)
    if product is None:
        return None, []
    files = product[1]
    item_key = paths.catalog_item(DERIVED_CATALOG, derived_collection(spec).id, paths.basename)
    item = store_url(base, item_key) if store.exists(item_key) else None
    links = ProductLinks(
        item=item,
        cog=store_url(base, files.cog),
        visual=store_url(base, files.visual),
        thumbnail=store_url(base, files.thumbnail),
        viewer=viewer_url(base, aoi, month),
        tiles=tile_url(base, aoi, month),
    )
    return links, [item] if item else []


def health(dagster: DagsterClient) -> Health:
    """Ask Dagster's GraphQL for its version."""
    ui = dagster_ui(dagster.url)
    try:
        version = dagster._execute("version", HEALTH, {}).get("version")
    except (DagsterUnavailable, DagsterRefused) as e:
        return Health(
            status="degraded", dagster=DagsterHealth(url=ui, graphql="unreachable", error=str(e))
        )
    return Health(status="ok", dagster=DagsterHealth(url=ui, graphql="ok", version=version))
