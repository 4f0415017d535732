"""notebooks/explore_composites.ipynb runs top to bottom against pipeline outputs.

Two months of the sample are materialized through the real job (all five assets, Dask
executor) into the session's store, then the notebook is executed with nbclient, pointed at
that store and AOI through environment variables (as a user points it at ``make demo``'s).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import xarray as xr
from dagster import DagsterInstance, execute_job, reconstructable
from nbclient import NotebookClient

from rgb_assets.aois import register_aoi
from rgb_assets.config import Settings
from rgb_assets.core.domain.months import Month
from rgb_assets.core.raster.timecube import cube_key
from rgb_assets.definitions import monthly_composite_job_def, pipeline_resources
from rgb_assets.partitions import partition_key

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore_composites.ipynb"
AOI = "notebook-sample"
MONTHS = [Month(2019, 8), Month(2019, 7)]  # out of order: the cube sorts them


@pytest.fixture(scope="module")
def outputs(sample_dir: Path) -> Path:
    storage = pipeline_resources(Settings.from_env())["storage"]
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    with DagsterInstance.get() as instance:
        register_aoi(storage.aois(), instance, AOI, feature)
        for month in MONTHS:
            tags = {
                "dagster/partition": str(partition_key(AOI, month)),
                "dagster/partition/aoi": AOI,
                "dagster/partition/month": month.partition_key,
            }
            job = reconstructable(monthly_composite_job_def)
            with execute_job(job, instance=instance, tags=tags) as result:
                assert result.success, [e.message for e in result.all_events if e.is_failure]
    return Path(storage.store().root)


def test_time_cube_of_the_pipeline(outputs: Path) -> None:
    cube = xr.open_zarr(outputs / cube_key("sentinel-2-l2a", AOI), consolidated=True)
    assert [str(t)[:7] for t in cube["time"].values] == ["2019-07", "2019-08"]
    assert cube["red"].dims == ("time", "y", "x")
    assert cube.rio.crs.to_epsg() == 32634


def test_notebook_runs_top_to_bottom(outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGB_ASSETS_STORAGE_ROOT", str(outputs))
    monkeypatch.setenv("RGB_ASSETS_AOI", AOI)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={
        "metadata": {"path": str(NOTEBOOK.parent)}
    }).execute()  # fmt: skip
    outputs_by_cell = [c.get("outputs", []) for c in nb.cells if c.cell_type == "code"]
    images = [o for outs in outputs_by_cell for o in outs if "image/png" in o.get("data", {})]
    # thumbnails grid, clear-count map, composite from the cube, pixel time series
    assert len(images) == 4, [list(o.get("data", {})) for outs in outputs_by_cell for o in outs]
    text = "".join(o.get("text", "") for outs in outputs_by_cell for o in outs)
    assert f"{AOI}_2019-07_sentinel-2-l2a" in text and f"{AOI}_2019-08_sentinel-2-l2a" in text
