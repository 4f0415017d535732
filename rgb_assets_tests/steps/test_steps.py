"""The four step functions on the real sample: what is published, kept, withdrawn and removed.

One partition (2019-03: two scenes, clear fraction about 0.97) is archived, cataloged,
composited as version ``v1`` and cataloged once per module; each test continues from a copy of
that store. An "empty month" is the same partition archived again with ``max_cloud_cover=0``:
the source then returns no scene (the two have 100 % and 0.28 % cloud cover).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr
import zarr

from rgb_assets.core.domain.aoi import Aoi, AoiRegistry
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products import quality
from rgb_assets.core.products.composite import WRITING, product_versions, read_product
from rgb_assets.core.raster.compositing import CompositeOptions
from rgb_assets.core.raster.masking import MaskRule
from rgb_assets.core.raster.timecube import cube_key, open_cube
from rgb_assets.core.stac.source import StacSource, open_source
from rgb_assets.core.storage import checksums, layout
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store
from rgb_assets.steps import (
    archive_scenes,
    catalog_composite,
    catalog_raw_scenes,
    composite_month,
    update_time_cube,
)
from rgb_assets.steps.timeseries import cube_lock

REPO = Path(__file__).resolve().parents[2]
SPEC = get_collection("sentinel-2-l2a")
MONTH = Month(2019, 3)
OPTIONS = CompositeOptions(mask=MaskRule("scl"))


@pytest.fixture(scope="module")
def source(sample_dir: Path) -> StacSource:
    return open_source(str(sample_dir / "collection.json"))


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, source: StacSource) -> dict:
    """A store where the partition went through all four steps once (version v1)."""
    store = Store(tmp_path_factory.mktemp("steps") / "store")
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    aoi, _ = AoiRegistry(store).add("sample", feature)
    raw = archive_scenes(source, SPEC, aoi, MONTH, store)
    raw_cat = catalog_raw_scenes(store, SPEC, aoi.name, MONTH, source_collection_id=SPEC.key)
    comp = composite_month(store, SPEC, aoi, MONTH, OPTIONS, version="v1")
    derived = catalog_composite(store, SPEC, aoi, MONTH)
    return {
        "root": Path(store.root),
        "aoi": aoi,
        "raw": raw,
        "raw_cat": raw_cat,
        "comp": comp,
        "derived": derived,
    }


@pytest.fixture
def store(published: dict, tmp_path: Path) -> Store:
    """A private copy of the published store."""
    shutil.copytree(published["root"], tmp_path / "store")
    return Store(tmp_path / "store")


PATHS = PartitionPaths(SPEC.key, "sample", MONTH)


def _derived_item(store: Store) -> pystac.Item | None:
    key = PATHS.catalog_item(layout.DERIVED_CATALOG, f"{SPEC.key}-monthly-rgb", PATHS.basename)
    return pystac.Item.from_file(store.uri(key)) if store.exists(key) else None


def _item_version(store: Store) -> str:
    """The version folder the derived item's data asset points at."""
    item = _derived_item(store)
    assert item is not None
    return posixpath.basename(posixpath.dirname(item.assets["data"].get_absolute_href()))


def _empty_the_month(store: Store, source: StacSource, aoi: Aoi) -> None:
    raw = archive_scenes(source, SPEC, aoi, MONTH, store, max_cloud_cover=0)
    assert raw.empty


def test_the_four_steps_publish_a_linked_product(published: dict):
    """Archive → raw catalog → composite → derived catalog, each with its own outcome."""
    store = Store(published["root"])
    assert len(published["raw"].items) == 2
    assert store.exists(PATHS.manifest)
    assert published["raw_cat"].outcome == "cataloged"
    assert published["raw_cat"].scene_count == 2 and len(published["raw_cat"].item_keys) == 2
    comp = published["comp"]
    assert comp.outcome == "published" and comp.files.version == "v1"
    assert 0.9 < comp.result.stats["clear_fraction"] < 1.0
    assert {c.name for c in comp.checks} == {c.name for c in quality.CHECKS}
    assert quality.blocking_failures(comp.checks) == []
    derived = published["derived"]
    assert derived.outcome == "published" and derived.derived_from == 2
    assert derived.cog == PATHS.product("v1").cog
    item = _derived_item(store)
    assert item is not None and _item_version(store) == "v1"
    assert len(item.get_links("derived_from")) == 2
    data = item.assets["data"]
    assert checksums.matches(data.get_absolute_href(), data.extra_fields["file:checksum"])
    assert product_versions(store, PATHS) == ["v1"]


def test_an_empty_month_keeps_the_published_product_and_its_item(
    store: Store, source: StacSource, published: dict
):
    aoi = published["aoi"]
    _empty_the_month(store, source, aoi)
    raw_cat = catalog_raw_scenes(store, SPEC, aoi.name, MONTH, source_collection_id=SPEC.key)
    assert raw_cat.outcome == "unchanged"
    assert all(store.exists(k) for k in published["raw_cat"].item_keys)
    outcome = composite_month(store, SPEC, aoi, MONTH, OPTIONS, version="v2")
    assert outcome.outcome == "no data"
    assert outcome.files is None and not outcome.withdrawn
    assert outcome.kept is not None and outcome.kept.version == "v1"
    assert all(not c.passed and c.severity == "warn" for c in outcome.checks)
    assert read_product(store, PATHS)[1].version == "v1"  # type: ignore[index]
    derived = catalog_composite(store, SPEC, aoi, MONTH)
    assert derived.outcome == "published" and derived.removed == []
    assert _item_version(store) == "v1"
    assert product_versions(store, PATHS) == ["v1"]


def test_withdraw_when_empty_withdraws_and_the_catalog_step_removes_the_item(
    store: Store, source: StacSource, published: dict
):
    aoi = published["aoi"]
    _empty_the_month(store, source, aoi)
    outcome = composite_month(
        store, SPEC, aoi, MONTH, OPTIONS, withdraw_when_empty=True, version="v2"
    )
    assert outcome.outcome == "no data" and outcome.withdrawn and outcome.kept is None
    assert read_product(store, PATHS) is None
    assert _derived_item(store) is not None, "the item goes only in the catalog step"
    derived = catalog_composite(store, SPEC, aoi, MONTH)
    assert derived.outcome == "withdrawn"
    assert derived.removed == published["derived"].item_keys
    assert _derived_item(store) is None
    assert product_versions(store, PATHS) == []
    assert [n for n in store.listdir(PATHS.composite) if not n.startswith(".")] == []
    assert catalog_composite(store, SPEC, aoi, MONTH).outcome == "unchanged"


def test_a_rerun_publishes_a_new_version_and_the_catalog_step_removes_the_old(
    store: Store, published: dict
):
    aoi = published["aoi"]
    store.write_text(f"{PATHS.composite}/crashed/partial.tif", "left by a crashed run")
    outcome = composite_month(store, SPEC, aoi, MONTH, OPTIONS, version="v2")
    assert outcome.outcome == "published" and outcome.files.version == "v2"
    assert outcome.removed_versions == ["crashed"]
    assert product_versions(store, PATHS) == ["v1", "v2"], "v1 stays while the item uses it"
    assert read_product(store, PATHS)[1].version == "v2"  # type: ignore[index]
    assert _item_version(store) == "v1"
    derived = catalog_composite(store, SPEC, aoi, MONTH)
    assert derived.outcome == "published"
    assert _item_version(store) == "v2"
    assert product_versions(store, PATHS) == ["v2"]
    # Same inputs, same pixels: the new analysis COG is byte-identical to the first one.
    first = published["comp"].files.checksums[PATHS.product("v1").cog]
    assert outcome.files.checksums[PATHS.product("v2").cog] == first


def test_a_version_another_run_is_still_writing_is_never_removed(store: Store, published: dict):
    """Two runs of the partition overlap: the version one is still writing (not published,
    referenced by nobody, its writer alive) survives the other's composite and catalog steps;
    once its writer is dead (a killed run), the next clean-up removes it."""
    aoi = published["aoi"]
    busy = PATHS.product("busy").folder
    store.write_text(f"{busy}/partial.tif", "being written")
    store.write_text(f"{busy}/{WRITING}{socket.gethostname()}-{os.getpid()}", "")
    outcome = composite_month(store, SPEC, aoi, MONTH, OPTIONS, version="v2")
    assert outcome.outcome == "published" and outcome.removed_versions == []
    assert not [n for n in store.listdir(PATHS.product("v2").folder) if n.startswith(WRITING)]
    catalog_composite(store, SPEC, aoi, MONTH)
    assert product_versions(store, PATHS) == ["busy", "v2"]
    gone = subprocess.Popen(["true"])  # a process that has exited: the killed writer
    gone.wait()
    store.delete(busy)
    store.write_text(f"{busy}/partial.tif", "left by a killed run")
    store.write_text(f"{busy}/{WRITING}{socket.gethostname()}-{gone.pid}", "")
    catalog_composite(store, SPEC, aoi, MONTH)
    assert product_versions(store, PATHS) == ["v2"]


def test_a_composite_failing_a_blocking_check_is_not_published(store: Store, published: dict):
    """The month's clear fraction is below 1, so ``min_clear_fraction=1.0`` blocks it."""
    aoi = published["aoi"]
    outcome = composite_month(
        store, SPEC, aoi, MONTH, OPTIONS, min_clear_fraction=1.0, version="v2"
    )
    assert outcome.outcome == "blocked"
    failed = [c.name for c in quality.blocking_failures(outcome.checks)]
    assert failed == ["clear_coverage"]
    assert outcome.files is None and outcome.kept.version == "v1"
    assert read_product(store, PATHS)[1].version == "v1"  # type: ignore[index]
    assert product_versions(store, PATHS) == ["v1"]
    assert catalog_composite(store, SPEC, aoi, MONTH).outcome == "published"
    assert _item_version(store) == "v1"


def test_a_waiting_time_cube_update_copies_the_product_published_when_it_gets_the_lock(
    store: Store, published: dict
):
    """Two overlapping runs of a partition: the cube update of the first waits for the cube's
    lock while the second publishes another product; the cube gets the product published
    when the update got the lock, never the one it would have read while waiting."""
    aoi = published["aoi"]
    with ThreadPoolExecutor(1) as pool:
        with store.lock(cube_lock(SPEC.key, aoi.name)):
            waiting = pool.submit(update_time_cube, store, SPEC, aoi.name, MONTH)
            time.sleep(0.5)
            assert not waiting.done(), "the update did not wait for the cube's lock"
            newer = composite_month(store, SPEC, aoi, MONTH, OPTIONS, version="v2")
            assert newer.outcome == "published"
            # Another run's pixels (same inputs would give the same ones).
            red = zarr.open_group(str(store.local_path(newer.files.zarr)), mode="r+")["red"]
            red[:] = red[:] / 2
        assert waiting.result(timeout=120).action == "created"
    cube = open_cube(store, cube_key(SPEC.key, aoi.name))
    assert cube is not None
    step = cube["red"].isel(time=0).values
    v1, v2 = (
        xr.open_zarr(store.local_path(PATHS.product(v).zarr), consolidated=True)["red"].values
        for v in ("v1", "v2")
    )
    assert not np.array_equal(v1, v2, equal_nan=True), "the two products must differ"
    np.testing.assert_array_equal(step, v2)
