"""End to end on the Dask executor with a persistent DAGSTER_HOME (not in-process).

One AOI × month of the real sample is materialized through ``execute_job`` (the path the
daemon takes), on the native EPSG:3035 grid so the composite can be checked pixel for pixel
against an independent numpy computation (masked nanmedian) on the sample's raw pixels.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rioxarray  # noqa: F401
import shapely
import xarray as xr
from dagster import AssetKey, DagsterInstance, execute_job, reconstructable
from pyproj import Transformer
from rasterio.features import geometry_mask
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import mapping, shape
from stac_pydantic import Item as PydanticItem

from rgb_assets.aois import register_aoi
from rgb_assets.config import Settings
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import product_versions, read_product
from rgb_assets.core.raster.masking import DEFAULT_SCL_EXCLUDE
from rgb_assets.core.storage import layout
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.definitions import monthly_composite_job_def, pipeline_resources
from rgb_assets.partitions import partition_key

REPO = Path(__file__).resolve().parents[1]
AOI = "e2e-sample"
MONTH = Month(2019, 7)
EMPTY_MONTH = Month(2019, 5)  # the sample has no acquisition between 2019-04-22 and 2019-06-11
# The plain SCL median (no cloud clean-up, no haze test), which must equal the independent
# numpy masked nanmedian exactly; the defaults are checked on the demo months (README).
PLAIN = {"opening": 0, "dilation": 0, "haze_index": "none"}
RUN_CONFIG = {"ops": {"monthly_composite": {"config": {"crs": "EPSG:3035", **PLAIN}}}}


def _run(instance: DagsterInstance, month: Month, run_config: dict | None = None):
    key = partition_key(AOI, month)
    tags = {
        "dagster/partition": str(key),
        "dagster/partition/aoi": AOI,
        "dagster/partition/month": month.partition_key,
    }
    with execute_job(
        reconstructable(monthly_composite_job_def),
        instance=instance,
        tags=tags,
        run_config=run_config or {},
    ) as result:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result.run_id


def _materialization(instance: DagsterInstance, asset: str, run_id: str) -> dict:
    records = instance.get_records_for_run(run_id).records
    for r in records:
        ev = r.event_log_entry.dagster_event
        if ev and ev.is_step_materialization and ev.asset_key == AssetKey(asset):
            md = ev.step_materialization_data.materialization.metadata
            return {k: getattr(v, "value", v) for k, v in md.items()}
    raise AssertionError(f"no materialization of {asset} in run {run_id}")


def _files(store, month: Month) -> dict[str, str]:
    """Store keys of the published product of the partition (from its sidecar)."""
    product = read_product(store, PartitionPaths("sentinel-2-l2a", AOI, month))
    assert product is not None
    f = product[1]
    return {
        "cog": f.cog,
        "zarr": f.zarr,
        "visual": f.visual,
        "thumbnail": f.thumbnail,
        "version": f.version,
    }


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pipeline(sample_dir: Path):
    resources = pipeline_resources(Settings.from_env())
    storage = resources["storage"]
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    with DagsterInstance.get() as instance:
        register_aoi(storage.aois(), instance, AOI, feature)
        first = _run(instance, MONTH, RUN_CONFIG)
        store = storage.store()
        first_files = _files(store, MONTH)
        before = {
            "cog": store.sha256(first_files["cog"]),
            "visual": store.sha256(first_files["visual"]),
            "zarr": _tree_digest(store.local_path(first_files["zarr"])),
            "version": first_files["version"],
        }
        second = _run(instance, MONTH, RUN_CONFIG)
        keys = _files(store, MONTH)
        empty = _run(instance, EMPTY_MONTH, RUN_CONFIG)
        yield {
            "instance": instance,
            "store": store,
            "keys": keys,
            "before": before,
            "runs": (first, second, empty),
            "feature": feature,
        }


def _expected(sample_dir: Path, feature: dict, out_transform, out_shape):
    """Independent reference: masked nanmedian of the raw sample COGs for the month."""
    catalog = pystac.read_file(str(sample_dir / "collection.json"))
    items = [
        i for i in catalog.get_items(recursive=True) if i.datetime and MONTH.contains(i.datetime)
    ]
    assert len(items) == 5
    stacks: dict[str, list[np.ndarray]] = {"red": [], "green": [], "blue": [], "scl": []}
    for item in sorted(items, key=lambda i: i.datetime):
        for band in stacks:
            with rasterio.open(item.assets[band].get_absolute_href()) as src:
                src_transform = src.transform
                stacks[band].append(src.read(1))
    arr = {k: np.stack(v) for k, v in stacks.items()}
    valid = ~np.isin(arr["scl"], DEFAULT_SCL_EXCLUDE)
    for b in ("red", "green", "blue"):
        valid &= arr[b] != 0
    # AOI polygon rasterised on the sample grid (pixel centres), independently of odc-geo.
    to_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform
    poly = shapely.transform(
        shape(feature["geometry"]), lambda xy: np.column_stack(to_3035(xy[:, 0], xy[:, 1]))
    )
    inside = geometry_mask([mapping(poly)], arr["scl"].shape[1:], src_transform, invert=True)
    valid &= inside[None]
    col0 = round((out_transform.c - src_transform.c) / 10)
    row0 = round((out_transform.f - src_transform.f) / -10)
    assert abs(out_transform.c - src_transform.c - 10 * col0) < 1e-6, "grid not aligned to sample"
    h, w = out_shape
    t, sh, sw = valid.shape
    # Place the sample on the output grid: output (r, c) is sample (r + row0, c + col0).
    rs, cs = slice(max(0, -row0), min(h, sh - row0)), slice(max(0, -col0), min(w, sw - col0))
    src_win = (
        slice(None),
        slice(rs.start + row0, rs.stop + row0),
        slice(cs.start + col0, cs.stop + col0),
    )
    out = {}
    for b in ("red", "green", "blue"):
        canvas = np.full((t, h, w), np.nan, "float32")
        canvas[:, rs, cs] = np.where(valid, arr[b] * np.float32(1e-4), np.nan)[src_win]
        # Pixels with no clear observation are all-NaN by design (the composite's nodata).
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[b] = np.nanmedian(canvas, axis=0)
    count = np.zeros((h, w), int)
    count[rs, cs] = valid[src_win].sum(axis=0)
    out["clear_count"] = count
    return out


def test_composite_matches_independent_numpy(pipeline, sample_dir):
    keys, store = pipeline["keys"], pipeline["store"]
    cog = store.local_path(keys["cog"])
    with rasterio.open(cog) as src:
        assert src.crs.to_epsg() == 3035
        data = src.read()
        transform, shape_ = src.transform, (src.height, src.width)
        assert src.descriptions == ("red", "green", "blue", "clear_count")
    expected = _expected(sample_dir, pipeline["feature"], transform, shape_)
    assert int(expected["clear_count"].max()) == 5
    for i, b in enumerate(("red", "green", "blue")):
        np.testing.assert_allclose(data[i], expected[b], rtol=0, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(data[3], expected["clear_count"])

    ds = xr.open_zarr(store.local_path(keys["zarr"]), consolidated=True)
    assert ds.rio.crs.to_epsg() == 3035
    assert ds.odc.geobox.affine == transform
    for b in ("red", "green", "blue"):
        np.testing.assert_allclose(ds[b].values, expected[b], rtol=0, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(ds["clear_count"].values, expected["clear_count"])


def test_cogs_are_valid_and_visual_is_8bit(pipeline):
    keys, store = pipeline["keys"], pipeline["store"]
    for name in ("cog", "visual"):
        ok, errors, _ = cog_validate(str(store.local_path(keys[name])), quiet=True)
        assert ok, errors
    with rasterio.open(store.local_path(keys["visual"])) as src:
        assert src.count == 3 and src.dtypes[0] == "uint8" and src.nodata == 0
        assert src.overviews(1) or max(src.width, src.height) <= 512
    with rasterio.open(store.local_path(keys["cog"])) as src:
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
        assert src.profile["tiled"] and src.compression is not None
    assert store.local_path(keys["thumbnail"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_catalogs_open_and_items_validate(pipeline):
    store = pipeline["store"]
    raw = pystac.Catalog.from_file(str(store.local_path(layout.catalog_root(layout.RAW_CATALOG))))
    raw_items = [i for i in raw.get_items(recursive=True) if i.properties["rgb_assets:aoi"] == AOI]
    assert len(raw_items) == 5  # the month's five scenes, once each after two runs
    for item in raw_items:
        PydanticItem.model_validate(item.to_dict())
        assert item.get_single_link("via") is not None
        for asset in item.assets.values():
            assert Path(asset.get_absolute_href()).exists()
            assert asset.extra_fields["file:checksum"].startswith("1220")
    derived_root = store.local_path(layout.catalog_root(layout.DERIVED_CATALOG))
    derived = pystac.Catalog.from_file(str(derived_root))
    items = [i for i in derived.get_items(recursive=True) if i.properties["rgb_assets:aoi"] == AOI]
    assert [i.id for i in items] == [f"{AOI}_{MONTH.key}_sentinel-2-l2a"]
    item = items[0]
    PydanticItem.model_validate(item.to_dict())
    assert item.properties["start_datetime"].startswith("2019-07-01")
    assert item.properties["end_datetime"].startswith("2019-07-31T23:59:59")
    sources = item.get_links("derived_from")
    assert len(sources) == 5
    assert all(Path(lk.get_absolute_href()).exists() for lk in sources)
    assert {a.roles[0] for a in item.assets.values()} >= {"data", "visual", "thumbnail"}
    assert item.assets["zarr"].media_type == "application/vnd+zarr"
    for asset in item.assets.values():
        assert Path(asset.get_absolute_href()).exists()


def test_rerun_replaces_identically(pipeline):
    keys, store, before = pipeline["keys"], pipeline["store"], pipeline["before"]
    assert store.sha256(keys["cog"]) == before["cog"]
    assert store.sha256(keys["visual"]) == before["visual"]
    assert _tree_digest(store.local_path(keys["zarr"])) == before["zarr"]
    # The re-run published a new version and removed the old one: one product, no duplicate.
    assert keys["version"] != before["version"]
    paths = PartitionPaths("sentinel-2-l2a", AOI, MONTH)
    assert product_versions(store, paths) == [keys["version"]]
    md = _materialization(pipeline["instance"], "raw_scenes", pipeline["runs"][1])
    assert md["stats"]["intact"] == 5 and md["stats"]["archived"] == 0


def test_run_metadata_and_dask_cluster(pipeline):
    md = _materialization(pipeline["instance"], "monthly_composite", pipeline["runs"][0])
    assert md["outcome"] == "published"
    assert md["scene_count"] == 5
    assert 0.9 < md["clear_fraction"] <= 1.0
    # The recipe that made it: the plain median, and the residue it leaves (July is clean).
    assert md["recipe"]["method"] == "median" and md["recipe"]["haze"] == {"index": "none"}
    assert md["recipe"]["mask"]["dilation"] == 0 and md["residue_fraction"] < 0.01
    assert md["dask_dashboard"].startswith("http")
    # The composite ran on the run's cluster (a 92 x 96 px month is one tile: its few tasks
    # may all land on one of the workers).
    assert md["dask_workers_total"] >= 2
    assert 1 <= md["dask_workers_used"] <= md["dask_workers_total"]
    dashboard = md["dask_dashboard"]
    # Every asset records counts, timings, where its output went, and the run's dashboard.
    raw = _materialization(pipeline["instance"], "raw_scenes", pipeline["runs"][0])
    assert raw["item_count"] == raw["archived_count"] == raw["scene_count"] == 5
    assert raw["intact_count"] == raw["skipped_count"] == 0
    assert {"search_s", "total_s", "step_s"} <= set(raw["timings"])
    assert Path(raw["manifest"]).is_file() and Path(raw["archive_folder"]).is_dir()
    raw_cat = _materialization(pipeline["instance"], "raw_catalog", pipeline["runs"][0])
    assert raw_cat["scene_count"] == 5 and raw_cat["skipped_count"] == 0
    assert "build_s" in raw_cat["timings"]
    assert Path(raw_cat["partition_folder"]).is_dir()
    derived = _materialization(pipeline["instance"], "derived_catalog", pipeline["runs"][0])
    assert derived["scene_count"] == derived["derived_from"] == 5
    assert "build_s" in derived["timings"]
    assert Path(derived["item"]).is_file()
    # The first run's product version was replaced by the second run's, which is published.
    latest = _materialization(pipeline["instance"], "derived_catalog", pipeline["runs"][1])
    assert Path(latest["cog"]).is_file()
    assert not Path(derived["cog"]).exists()
    # All steps of one run share the run's cluster, hence one dashboard.
    for step in (raw, raw_cat, derived):
        assert step["dask_dashboard"] == dashboard


def test_month_without_scenes_is_an_explicit_no_data_success(pipeline):
    instance, store = pipeline["instance"], pipeline["store"]
    run = pipeline["runs"][2]
    assert _materialization(instance, "raw_scenes", run)["outcome"] == "no data"
    assert _materialization(instance, "monthly_composite", run)["outcome"] == "no data"
    assert _materialization(instance, "derived_catalog", run)["published"] == 0
    assert not store.exists(PartitionPaths("sentinel-2-l2a", AOI, EMPTY_MONTH).sidecar)
