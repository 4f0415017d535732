"""Dagster resources: configuration-bearing handles the assets build core objects from."""

from rgb_assets.resources.catalogs import CatalogsResource
from rgb_assets.resources.limits import LimitsResource
from rgb_assets.resources.stac_source import StacSourceResource
from rgb_assets.resources.storage import StorageResource

__all__ = ["CatalogsResource", "LimitsResource", "StacSourceResource", "StorageResource"]
