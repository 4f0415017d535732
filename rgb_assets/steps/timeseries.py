"""Step 5: the partition's month in its AOI's time cube (``aoi_timeseries``)."""

from __future__ import annotations

from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import read_product
from rgb_assets.core.raster.timecube import CubeUpdate, cube_key, write_month
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store
from rgb_assets.steps.composite import partition_lock


def cube_lock(collection: str, aoi: str) -> str:
    """Lock key of one AOI's cube: the months of an AOI run in parallel and share it."""
    return f"timecubes/{collection}/.{aoi}.lock"


def update_time_cube(store: Store, spec: CollectionSpec, aoi: str, month: Month) -> CubeUpdate:
    """Make the month's time step the published composite of the partition: replaced in place
    when the cube has the month, added in time order otherwise, removed when no product is
    published (never made, or withdrawn). An empty month keeps its product, hence its step.

    The published product is read under the cube's lock, then the partition's: when two runs
    of the partition overlap, the last to write copies the product published last, whichever
    run it is, and no catalog step removes that version while it is copied. (Locks are taken
    cube first, partition second; no step takes them the other way round.)"""
    paths = PartitionPaths(spec.key, aoi, month)
    with store.lock(cube_lock(spec.key, aoi)), store.lock(partition_lock(paths)):
        product = read_product(store, paths)
        composite = None if product is None else product[1].zarr
        return write_month(store, cube_key(spec.key, aoi), month, composite)
