"""What the assets record on each materialization: partition, timings, cluster, catalog links."""

from __future__ import annotations

import time
from typing import Any

from dagster import AssetExecutionContext, MetadataValue
from dagster._core.errors import DagsterInvalidPropertyError

from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage.store import Store
from rgb_assets.dask_compute import dashboard_metadata, step_dashboard
from rgb_assets.partitions import split_key
from rgb_assets.steps import CatalogOutcome


def partition_of(context: AssetExecutionContext) -> tuple[str, Month]:
    """(AOI name, month) of the partition being materialized."""
    return split_key(context.partition_key)


def run_config_of(context: AssetExecutionContext) -> dict[str, Any]:
    """The run's config (empty when the asset is invoked directly, outside any run)."""
    try:
        return dict(context.run.run_config)
    except DagsterInvalidPropertyError:
        return {}


def dashboard() -> MetadataValue | str:
    """The Dask dashboard of the cluster running this step ("in-process" without one)."""
    return dashboard_metadata(step_dashboard())


def timings(values: dict[str, float], started: float | None = None) -> MetadataValue:
    if started is not None:
        values = values | {"step_s": round(time.perf_counter() - started, 3)}
    return MetadataValue.json(values)


def catalog_metadata(
    store: Store, outcome: CatalogOutcome, publish_url: str | None
) -> dict[str, Any]:
    """Metadata of a catalog step: where the catalog is, what changed, what the API got."""
    meta: dict[str, Any] = {
        "outcome": outcome.outcome,
        "catalog": MetadataValue.path(store.uri(outcome.catalog)),
        "items": len(outcome.item_keys),
        "item_hrefs": MetadataValue.json([store.uri(k) for k in outcome.item_keys]),
        "replaced_or_removed": len(outcome.removed),
        "scene_count": outcome.scene_count,
        "timings": MetadataValue.json(outcome.timings),
        "dask_dashboard": dashboard(),
    }
    if publish_url and outcome.api is not None:
        meta |= {
            "published_to": MetadataValue.url(publish_url),
            "api_collection": outcome.api.collection,
            "api_inserted": len(outcome.api.inserted),
            "api_updated": len(outcome.api.updated),
            "api_deleted": len(outcome.api.deleted),
        }
    return meta
