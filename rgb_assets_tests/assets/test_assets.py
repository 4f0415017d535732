"""The four assets invoked directly (``build_asset_context``) on a temporary store.

One month with a scene (2019-03, archived with ``max_cloud_cover=50``: one of its two scenes)
goes through raw_scenes → raw_catalog → monthly_composite → derived_catalog once per module; a
month without scenes (2019-05) shows every asset's "no data" outcome.
"""

from __future__ import annotations

import json
from pathlib import Path

import pystac
import pytest
from dagster import AssetCheckSeverity, MaterializeResult, MultiPartitionKey, build_asset_context

from rgb_assets.assets import derived_catalog, monthly_composite, raw_catalog, raw_scenes
from rgb_assets.assets.monthly_composite import CompositeConfig
from rgb_assets.assets.raw_scenes import RawScenesConfig
from rgb_assets.config import Settings
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products import quality
from rgb_assets.core.products.composite import read_product
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.definitions import pipeline_resources
from rgb_assets.resources import StorageResource

REPO = Path(__file__).resolve().parents[2]
AOI = "sample"
MONTH, EMPTY = Month(2019, 3), Month(2019, 5)
CHECKS = {c.name for c in quality.CHECKS}


def _resources(sample_dir: Path, root: Path) -> dict:
    """The resources definitions.py builds, for the sample source and a temporary store."""
    settings = Settings.from_env(
        {
            "RGB_ASSETS_STAC_URL": str(sample_dir / "collection.json"),
            "RGB_ASSETS_STORAGE_ROOT": str(root),
        }
    )
    return pipeline_resources(settings)


def _materialize(resources: dict, month: Month) -> dict[str, MaterializeResult]:
    """Each asset of the partition in order, as the executor would run them."""
    key = MultiPartitionKey({"aoi": AOI, "month": month.partition_key})
    out: dict[str, MaterializeResult] = {}

    def context():  # a fresh context per asset, as each step gets its own
        return build_asset_context(partition_key=key, resources=resources)

    out["raw_scenes"] = raw_scenes(context(), RawScenesConfig(max_cloud_cover=50))
    out["raw_catalog"] = raw_catalog(context())
    out["monthly_composite"] = monthly_composite(context(), CompositeConfig())
    out["derived_catalog"] = derived_catalog(context())
    return out


def _md(result: MaterializeResult) -> dict:
    return {k: getattr(v, "value", v) for k, v in (result.metadata or {}).items()}


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("assets") / "store"
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    StorageResource(root=str(root)).aois().add(AOI, feature)
    return root


@pytest.fixture(scope="module")
def month_results(store_root: Path, sample_dir: Path) -> dict[str, MaterializeResult]:
    return _materialize(_resources(sample_dir, store_root), MONTH)


@pytest.fixture(scope="module")
def empty_results(store_root: Path, sample_dir: Path) -> dict[str, MaterializeResult]:
    return _materialize(_resources(sample_dir, store_root), EMPTY)


def test_raw_scenes_archives_the_month(month_results: dict, store_root: Path):
    md = _md(month_results["raw_scenes"])
    assert md["outcome"] == "archived"
    assert md["scene_count"] == 1 and md["item_count"] == 1 and md["archived_count"] == 1
    assert md["items"] == ["S2_L2A_RO_SAMPLE_20190328"]
    assert md["dask_dashboard"] == "in-process"
    paths = PartitionPaths("sentinel-2-l2a", AOI, MONTH)
    assert md["manifest"] == str(store_root / paths.manifest)
    assert Path(md["manifest"]).exists()
    assert md["bytes_written"] > 0


def test_raw_catalog_catalogs_the_archived_scene(month_results: dict):
    md = _md(month_results["raw_catalog"])
    assert md["outcome"] == "cataloged"
    assert md["items"] == 1 and md["scene_count"] == 1 and md["skipped_count"] == 0
    (href,) = md["item_hrefs"]
    assert pystac.Item.from_file(href).id == "S2_L2A_RO_SAMPLE_20190328__sample"
    assert Path(md["catalog"]).name == "catalog.json" and Path(md["catalog"]).exists()
    assert Path(md["partition_folder"]).is_dir()


def test_monthly_composite_publishes_with_passing_checks(month_results: dict, store_root: Path):
    result = month_results["monthly_composite"]
    md = _md(result)
    assert md["outcome"] == "published"
    assert md["scene_count"] == 1 and md["observations"] == 1
    assert 0 < md["clear_fraction"] <= 1
    assert md["withdrawn"] is False and md["removed_versions"] == []
    for key in ("cog", "zarr", "visual", "thumbnail"):
        assert Path(md[key]).exists(), key
    assert md["grid"]["epsg"] == 32634 and md["grid"]["shape"] == [92, 96]
    assert set(md["band_stats"]) == {"red", "green", "blue"}
    assert md["bytes"] > 0
    assert md["dask_dashboard"] == "in-process"
    product = read_product(
        StorageResource(root=str(store_root)).store(),
        PartitionPaths("sentinel-2-l2a", AOI, MONTH),
    )
    assert product is not None and product[1].version == md["version"]
    checks = {c.check_name: c for c in result.check_results}
    assert set(checks) == CHECKS
    assert set(checks) == {c.name for c in quality.CHECKS}
    gates = ("clear_coverage", "reflectance_range", "output_grid")
    assert all(checks[n].passed and checks[n].severity == AssetCheckSeverity.ERROR for n in gates)
    # The residue check warns (2019-03 has snow/haze residue above 1 %), it does not block.
    assert checks["cloud_residue"].severity == AssetCheckSeverity.WARN
    assert checks["clear_coverage"].metadata["clear_fraction"].value == md["clear_fraction"]


def test_derived_catalog_describes_the_published_composite(month_results: dict):
    md = _md(month_results["derived_catalog"])
    composite = _md(month_results["monthly_composite"])
    assert md["outcome"] == "published"
    assert md["published"] == 1 and md["derived_from"] == 1
    assert md["cog"] == composite["cog"]
    item = pystac.Item.from_file(md["item"])
    assert item.id == "sample_2019-03_sentinel-2-l2a"
    assert item.assets["data"].get_absolute_href() == composite["cog"]


def test_a_month_without_scenes_is_no_data_everywhere(
    empty_results: dict, month_results: dict, store_root: Path
):
    """Nothing archived, cataloged or published; the other month's product is untouched."""
    for name, result in empty_results.items():
        assert _md(result)["outcome"] == "no data", name
    assert _md(empty_results["raw_scenes"])["scene_count"] == 0
    assert _md(empty_results["raw_catalog"])["items"] == 0
    composite = empty_results["monthly_composite"]
    assert "cog" not in _md(composite)
    checks = {c.check_name: c for c in composite.check_results}
    assert set(checks) == CHECKS
    assert all(not c.passed and c.severity == AssetCheckSeverity.WARN for c in checks.values())
    assert _md(empty_results["derived_catalog"])["published"] == 0
    assert Path(_md(month_results["derived_catalog"])["item"]).exists()


def test_bad_bands_are_refused_before_anything_runs(store_root: Path, sample_dir: Path):
    key = MultiPartitionKey({"aoi": AOI, "month": MONTH.partition_key})
    context = build_asset_context(partition_key=key, resources=_resources(sample_dir, store_root))
    with pytest.raises(InputError) as e:
        monthly_composite(context, CompositeConfig(bands=["red", "green"]))
    assert e.value.field == "bands"
