"""The STAC source scenes are searched in, and the collection the pipeline composites."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from rgb_assets.core.domain.collection_specs import EARTH_SEARCH_URL, CollectionSpec, get_collection
from rgb_assets.core.stac.source import StacSource, open_source


class StacSourceResource(ConfigurableResource):
    """A STAC API URL (default: Earth Search) or a local static catalog path."""

    url: str = Field(default=EARTH_SEARCH_URL, description="STAC API URL or local catalog path")
    collection: str = Field(default="sentinel-2-l2a", description="Registry key of the collection")
    timeout_s: float = Field(default=60.0, description="Per-request timeout")
    max_retries: int = Field(default=5, description="Retries on 429/5xx/connection errors")

    def spec(self) -> CollectionSpec:
        return get_collection(self.collection)

    def open(self) -> StacSource:
        if self.url.startswith(("http://", "https://")):
            return open_source(self.url, timeout=self.timeout_s, max_retries=self.max_retries)
        return open_source(self.url)
