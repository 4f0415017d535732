"""The STAC source scenes are searched in, and the collection the pipeline composites."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from rgb_assets.core.domain.collection_specs import EARTH_SEARCH_URL, CollectionSpec, get_collection
from rgb_assets.core.stac.source import StacSource, open_source


class StacSourceResource(ConfigurableResource):
    """A STAC API URL (default: Earth Search) or a local static catalog path."""

    url: str = Field(default=EARTH_SEARCH_URL, description="STAC API URL or local catalog path")
    collection: str = Field(default="sentinel-2-l2a", description="Registry key of the collection")
    timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Bound on one STAC API call (open, or a search with its pages), retries "
        "included; each attempt may take a third of it",
    )
    max_retries: int = Field(default=5, ge=0, description="Retries on 429/5xx/connection errors")
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="Local folders asset hrefs may be read from, besides a local source's own",
    )

    def spec(self) -> CollectionSpec:
        return get_collection(self.collection)

    def open(self) -> StacSource:
        if self.url.startswith(("http://", "https://")):
            return open_source(
                self.url,
                timeout=self.timeout_s / 3,
                total_timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
        return open_source(self.url)

    def read_roots(self) -> tuple[str, ...]:
        """Local folders hrefs may be read from: a local source's folder and the allowed roots."""
        roots = list(self.allowed_roots)
        if "://" not in self.url or self.url.startswith("file://"):
            path = Path(self.url.removeprefix("file://")).expanduser().resolve()
            roots.append(str(path if path.is_dir() else path.parent))
        return tuple(roots)
