"""Product versions of one partition: write, publish by sidecar, read, withdraw, clean up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from PIL import Image

from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import (
    CompositeResult,
    clear_withdrawn,
    is_withdrawn,
    product_versions,
    publish_version,
    read_product,
    remove_versions,
    withdraw_product,
    write_version,
)
from rgb_assets.core.raster.grids import describe
from rgb_assets.core.raster.writers import write_zarr
from rgb_assets.core.storage import checksums
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store

BANDS = ("red", "green", "blue")
GRID = GeoBox.from_bbox((400000, 5000000, 400640, 5000480), "EPSG:32633", resolution=10)
PATHS = PartitionPaths("sentinel-2-l2a", "forest", Month(2019, 7))


@pytest.fixture
def staged(tmp_path: Path) -> CompositeResult:
    """A 48 x 64 px composite staged as Zarr, as compute_composite leaves it."""
    rng = np.random.default_rng(3)
    variables = {b: (("y", "x"), rng.uniform(0, 0.3, GRID.shape).astype(np.float32)) for b in BANDS}
    variables["clear_count"] = (("y", "x"), np.full(GRID.shape, 4, np.uint16))
    ds = xr.Dataset(variables, coords=xr_coords(GRID))
    staging = tmp_path / "staging"
    staging.mkdir()
    result = CompositeResult(
        "sentinel-2-l2a",
        "forest",
        PATHS.month,
        BANDS,
        no_data=False,
        staging=str(staging),
        grid=describe(GRID),
        requested_grid=describe(GRID),
        stats={"observations": 4, "clear_fraction": 1.0, "clear_pixels": 3072, "bands": {}},
        raw_item_ids=["S2A_1", "S2B_2"],
    )
    write_zarr(ds, result.zarr_path)
    return result


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def test_write_version_uploads_four_checksummed_products_unpublished(
    staged: CompositeResult, store: Store
):
    files = write_version(staged, store, PATHS, "v1")
    product = PATHS.product("v1")
    assert (files.cog, files.zarr, files.visual, files.thumbnail, files.version) == (
        product.cog,
        product.zarr,
        product.visual,
        product.thumbnail,
        "v1",
    )
    assert (
        set(files.sizes) == set(files.checksums) == {product.cog, product.visual, product.thumbnail}
    )
    for key, checksum in files.checksums.items():
        assert store.size(key) == files.sizes[key]
        assert checksums.matches(store.local_path(key), checksum)
    assert store.exists(f"{product.zarr}/.zmetadata")
    with Image.open(store.local_path(product.thumbnail)) as img:
        assert img.size == (64, 48)
    assert read_product(store, PATHS) is None, "written but not yet published"
    assert product_versions(store, PATHS) == ["v1"]


def test_publish_then_read_round_trips_the_sidecar(staged: CompositeResult, store: Store):
    files = write_version(staged, store, PATHS, "v1")
    publish_version(staged, files, store, PATHS)
    product = read_product(store, PATHS)
    assert product is not None
    result, read_files = product
    assert read_files == files
    assert result.month == PATHS.month and result.bands == BANDS
    assert result.stats == staged.stats and result.raw_item_ids == ["S2A_1", "S2B_2"]
    assert result.grid == json.loads(json.dumps(staged.grid))
    assert result.staging is None, "the sidecar never points at a local staging folder"


def test_a_new_version_switches_the_sidecar_and_old_versions_go(
    staged: CompositeResult, store: Store
):
    v1 = write_version(staged, store, PATHS, "v1")
    publish_version(staged, v1, store, PATHS)
    v2 = write_version(staged, store, PATHS, "v2")
    assert read_product(store, PATHS)[1].version == "v1"  # type: ignore[index]
    publish_version(staged, v2, store, PATHS)
    assert read_product(store, PATHS)[1].version == "v2"  # type: ignore[index]
    assert product_versions(store, PATHS) == ["v1", "v2"]
    assert remove_versions(store, PATHS, keep={"v2"}) == ["v1"]
    assert product_versions(store, PATHS) == ["v2"]
    assert not store.exists(PATHS.product("v1").folder)
    assert store.exists(v2.cog) and store.exists(PATHS.sidecar)


def test_a_failed_write_removes_its_own_version_and_keeps_the_published_one(
    staged: CompositeResult, store: Store
):
    """A write that fails after its writer marker leaves no version folder behind: on a
    persistent cluster the marker's process (the worker) lives on, so no clean-up would."""
    v1 = write_version(staged, store, PATHS, "v1")
    publish_version(staged, v1, store, PATHS)
    shutil.rmtree(staged.zarr_path)  # the staged composite is gone: the write fails
    with pytest.raises(FileNotFoundError):
        write_version(staged, store, PATHS, "v2")
    assert product_versions(store, PATHS) == ["v1"]
    assert not store.exists(PATHS.product("v2").folder)
    assert read_product(store, PATHS)[1] == v1  # type: ignore[index]
    assert all(store.exists(key) for key in v1.sizes)


def test_withdraw_product_leaves_a_tombstone(staged: CompositeResult, store: Store):
    files = write_version(staged, store, PATHS, "v1")
    publish_version(staged, files, store, PATHS)
    assert not is_withdrawn(store, PATHS)
    assert withdraw_product(store, PATHS) is True
    assert read_product(store, PATHS) is None
    assert is_withdrawn(store, PATHS)
    assert product_versions(store, PATHS) == ["v1"], "files stay until the catalog lets go"
    assert withdraw_product(store, PATHS) is False, "nothing left to withdraw"
    clear_withdrawn(store, PATHS)
    assert not is_withdrawn(store, PATHS)
    assert remove_versions(store, PATHS, keep=set()) == ["v1"]
    assert store.listdir(PATHS.composite) == []


def test_withdrawing_what_was_never_published(store: Store):
    assert withdraw_product(store, PATHS) is False
    assert not is_withdrawn(store, PATHS)
