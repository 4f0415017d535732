"""Where the pipeline keeps everything: local disk or S3-compatible object storage."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from rgb_assets.core.aoi import AoiRegistry
from rgb_assets.core.storage import Store


class StorageResource(ConfigurableResource):
    """Root of the raw store, composites, catalogs and AOI registry.

    ``root`` is a local folder or an fsspec URL such as ``s3://bucket/prefix``;
    ``storage_options`` go to fsspec (for S3-compatible stores: ``endpoint_url``, ``key``,
    ``secret``; by default the usual AWS environment and credential chain apply).
    """

    root: str = Field(default="data/store", description="Local folder or s3://bucket/prefix")
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def store(self) -> Store:
        options = dict(self.storage_options)
        if "endpoint_url" in options:
            options.setdefault("client_kwargs", {})["endpoint_url"] = options.pop("endpoint_url")
        return Store(self.root, **options)

    def aois(self) -> AoiRegistry:
        return AoiRegistry(self.store())
