"""Where the catalogs are also published: a Transactions-enabled STAC API, or nowhere."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field


class CatalogsResource(ConfigurableResource):
    """The static catalogs always live in the store; ``publish_url`` adds a STAC API."""

    publish_url: str | None = Field(
        default=None,
        description="STAC API (Transactions extension) both catalogs are published to",
    )
