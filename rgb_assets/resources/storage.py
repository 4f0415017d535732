"""Where the pipeline keeps everything: local disk or S3-compatible object storage."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from rgb_assets.core.domain.aoi import AoiRegistry
from rgb_assets.core.storage.store import Store, gdal_s3_options


class StorageResource(ConfigurableResource):
    """Root of the raw store, composites, catalogs and AOI registry.

    ``root`` is a local folder or an fsspec URL such as ``s3://bucket/prefix``;
    ``storage_options`` go to fsspec. For an S3-compatible store ``endpoint_url`` is given to
    s3fs for writing and, as GDAL options, to every raster read of the store (see
    :meth:`gdal_options`). Credentials come from the AWS credential chain, which s3fs and GDAL
    both read; they are never part of this configuration.
    """

    root: str = Field(default="data/store", description="Local folder or s3://bucket/prefix")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, SeaweedFS); None: AWS"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict)
    public_url: str | None = Field(
        default=None,
        description="Base URL of `rgb-assets serve`, which serves this store's products over "
        "HTTP (RGB_ASSETS_PUBLIC_URL); None: not published over HTTP",
    )

    def store(self) -> Store:
        options = dict(self.storage_options)
        endpoint = self.s3_endpoint()
        if endpoint:
            options.setdefault("client_kwargs", {})["endpoint_url"] = endpoint
        return Store(self.root, **options)

    def s3_endpoint(self) -> str | None:
        """The S3-compatible endpoint of an ``s3://`` root, None for AWS itself or local roots."""
        if not self.root.startswith("s3://"):
            return None
        client_kwargs = self.storage_options.get("client_kwargs") or {}
        return (
            self.endpoint_url
            or self.storage_options.get("endpoint_url")
            or client_kwargs.get("endpoint_url")
        )

    def gdal_options(self) -> dict[str, str]:
        """GDAL settings rasterio/odc-stac need to read this store's ``s3://`` hrefs."""
        return gdal_s3_options(self.s3_endpoint())

    def aois(self) -> AoiRegistry:
        return AoiRegistry(self.store())
