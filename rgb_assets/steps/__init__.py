"""The four steps of a partition, as plain functions (no Dagster): the assets call them, and so
do the tests. Each reads what it needs from the store and writes its results there, so a step
runs the same on any worker of any cluster.

``archive_scenes`` → ``catalog_raw_scenes`` → ``composite_month`` → ``catalog_composite``;
``update_time_cube`` after ``composite_month``
"""

from rgb_assets.steps.archive import archive_scenes
from rgb_assets.steps.catalogs import CatalogOutcome, catalog_composite, catalog_raw_scenes
from rgb_assets.steps.composite import CompositeOutcome, composite_month
from rgb_assets.steps.timeseries import update_time_cube

__all__ = [
    "CatalogOutcome",
    "CompositeOutcome",
    "archive_scenes",
    "catalog_composite",
    "catalog_raw_scenes",
    "composite_month",
    "update_time_cube",
]
