"""Software-defined assets, partitioned by AOI × month: thin adapters over ``rgb_assets.steps``."""

from rgb_assets.assets.derived_catalog import derived_catalog
from rgb_assets.assets.monthly_composite import monthly_composite
from rgb_assets.assets.raw_catalog import raw_catalog
from rgb_assets.assets.raw_scenes import raw_scenes
from rgb_assets.assets.timeseries import aoi_timeseries

ALL_ASSETS = [raw_scenes, raw_catalog, monthly_composite, derived_catalog, aoi_timeseries]

__all__ = [
    "ALL_ASSETS",
    "aoi_timeseries",
    "derived_catalog",
    "monthly_composite",
    "raw_catalog",
    "raw_scenes",
]
