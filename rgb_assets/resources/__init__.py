"""Dagster resources and IO managers: thin wrappers that hand core objects to assets."""

from rgb_assets.resources.io_managers import (
    CatalogIOManager,
    CompositeIOManager,
    RawScenesIOManager,
)
from rgb_assets.resources.stac_source import StacSourceResource
from rgb_assets.resources.storage import StorageResource

__all__ = [
    "CatalogIOManager",
    "CompositeIOManager",
    "RawScenesIOManager",
    "StacSourceResource",
    "StorageResource",
]
