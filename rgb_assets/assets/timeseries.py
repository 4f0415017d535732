"""aoi_timeseries: the AOI's time cube, one Zarr per AOI with a ``time`` dimension.

Each AOI x month partition writes its month's published composite as one time step of
``timecubes/{collection}/{aoi}.zarr``: replaced in place when re-made, added in time order
otherwise, removed when the partition has no product. Open it with one ``xarray.open_zarr``
(CRS in ``spatial_ref``; ``.odc.geobox`` / ``.rio.crs`` read it).
"""

import time

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from rgb_assets.assets.automation import FOLLOW_UPSTREAM
from rgb_assets.assets.metadata import partition_of, timings
from rgb_assets.dask_compute import cluster_compute, dashboard_metadata
from rgb_assets.partitions import partitions_def
from rgb_assets.resources import StacSourceResource, StorageResource
from rgb_assets.steps.timeseries import update_time_cube


@asset(
    partitions_def=partitions_def,
    deps=["monthly_composite"],
    group_name="derived",
    kinds={"zarr", "xarray"},
    automation_condition=FOLLOW_UPSTREAM,
    description=__doc__,
)
def aoi_timeseries(
    context: AssetExecutionContext, stac: StacSourceResource, storage: StorageResource
) -> MaterializeResult:
    t0 = time.perf_counter()
    aoi, month = partition_of(context)
    store = storage.store()
    # The other months of the AOI wait for the cube's lock in their own steps: on a Dask
    # worker, the step secedes (cluster_compute), so a waiting step never holds the thread
    # the lock holder's reads and writes need.
    with cluster_compute() as cluster:
        update = update_time_cube(store, stac.spec(), aoi, month)
    return MaterializeResult(
        metadata={
            "cube": MetadataValue.path(store.uri(update.key)),
            "action": update.action,
            "time_steps": len(update.months),
            "months": MetadataValue.json(update.months),
            "open_with": MetadataValue.md(
                f"```python\nxarray.open_zarr({store.uri(update.key)!r})\n```"
            ),
            "dask_dashboard": dashboard_metadata(cluster.dashboard),
            "timings": timings({}, t0),
        }
    )
