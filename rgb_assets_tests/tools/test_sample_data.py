"""Checks the offline Sentinel-2 sample catalog against the cube it was derived from.

No downloads here: the catalog (``data/sample``) and the cached nrt sdist (``data/cache``) are
built beforehand by ``make sample-data``. A missing catalog is a failure, not a skip, so CI can
never go green without exercising the real pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_validate

from rgb_assets.tools import sample_data as sd

REPO = Path(__file__).resolve().parents[2]
MAKE_HINT = "run `make sample-data` (python -m rgb_assets.tools.sample_data) first"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample_dir() -> Path:
    path = Path(os.environ.get("RGB_ASSETS_SAMPLE_DIR", REPO / "data" / "sample"))
    if not (path / "collection.json").is_file():
        pytest.fail(f"sample catalog missing at {path}: {MAKE_HINT}")
    return path


@pytest.fixture(scope="module")
def sdist() -> Path:
    path = REPO / "data" / "cache" / sd.NRT_SDIST
    if not path.is_file():
        pytest.fail(f"cached sdist missing at {path}: {MAKE_HINT}")
    return path


@pytest.fixture(scope="module")
def cube(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> xr.Dataset:
    """The cube, re-read independently of the builder (raw DNs, any installed netCDF engine)."""
    nc = tmp_path_factory.mktemp("cube") / "cube.nc"
    with tarfile.open(sdist) as tar, tar.extractfile(sd.NRT_MEMBER) as src:  # type: ignore[union-attr]
        nc.write_bytes(src.read())
    with xr.open_dataset(nc, mask_and_scale=False) as ds:
        return ds.load()


@pytest.fixture(scope="module")
def items(sample_dir: Path) -> list[pystac.Item]:
    collection = pystac.Collection.from_file(str(sample_dir / "collection.json"))
    assert collection.id == sd.SAMPLE_COLLECTION_ID
    assert collection.license == "EUPL-1.2"
    assert sd.CREDIT in collection.description
    return sorted(collection.get_items(recursive=True), key=lambda i: i.id)


def _date_key(item: pystac.Item) -> np.datetime64:
    """The acquisition date encoded in the item id (YYYYMMDD), as the cube's time label."""
    d = item.id.removeprefix(sd.ITEM_PREFIX)
    return np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}", "ns")


def test_one_item_per_cube_date(items: list[pystac.Item], cube: xr.Dataset) -> None:
    assert len(items) == 140
    dates = [np.datetime64(str(t)[:10]) for t in cube["time"].values]
    assert [_date_key(i) for i in items] == sorted(dates)
    for item in items:
        assert item.datetime is not None
        assert item.datetime.strftime("%Y%m%dT%H%M%S%z") == (
            item.id.removeprefix(sd.ITEM_PREFIX) + "T093000+0000"
        )
        assert set(item.assets) == {"red", "green", "blue", "scl"}
        assert all(not a.href.startswith("/") for a in item.assets.values())


def test_cog_pixels_equal_cube(items: list[pystac.Item], cube: xr.Dataset) -> None:
    item = items[len(items) // 2]
    scene = cube.sel(time=_date_key(item))
    x, y = cube["x"].values, cube["y"].values
    expected_transform = Affine(10.0, 0.0, x[0] - 5, 0.0, -10.0, y[0] + 5)

    red = item.assets["red"].get_absolute_href()
    assert red is not None
    is_valid, errors, _ = cog_validate(red)
    assert is_valid, errors

    for key, var, dtype in [
        ("red", "B4", "uint16"),
        ("green", "B3", "uint16"),
        ("blue", "B2", "uint16"),
        ("scl", "SCL", "uint8"),
    ]:
        with rasterio.open(item.assets[key].get_absolute_href()) as src:
            assert src.crs.to_epsg() == 3035
            assert src.transform.almost_equals(expected_transform, precision=1e-6)
            assert (src.nodata, src.dtypes[0], src.shape) == (0, dtype, (100, 100))
            np.testing.assert_array_equal(src.read(1), scene[var].values.astype(dtype))
    assert item.properties["proj:shape"] == [100, 100]
    assert item.properties["proj:code"] == "EPSG:3035"


def test_cloud_cover_follows_scl_rule(items: list[pystac.Item], cube: xr.Dataset) -> None:
    for item in items:
        scl = cube["SCL"].sel(time=_date_key(item)).values
        valid = scl != 0
        cloudy = np.isin(scl, [3, 8, 9, 10]) & valid
        expected = round(100.0 * cloudy.sum() / valid.sum(), 2)
        assert item.properties["eo:cloud_cover"] == pytest.approx(expected, abs=1e-9), item.id


def test_every_asset_checksum(items: list[pystac.Item]) -> None:
    for item in items:
        for key, asset in item.assets.items():
            path = Path(asset.get_absolute_href() or "")
            assert asset.extra_fields["file:size"] == path.stat().st_size, (item.id, key)
            assert asset.extra_fields["file:checksum"] == "1220" + _sha256(path), (item.id, key)


def test_provenance_and_licence(sample_dir: Path, sdist: Path) -> None:
    provenance = json.loads((sample_dir / "PROVENANCE.json").read_text())
    assert provenance["package"] == "nrt" and provenance["version"] == "0.2.0"
    assert provenance["sdist"]["sha256"] == _sha256(sdist) == sd.NRT_SDIST_SHA256
    assert provenance["member"]["path"] == sd.NRT_MEMBER
    assert provenance["licence"] == "EUPL-1.2"
    assert provenance["credit"] == sd.CREDIT
    licence = sample_dir / "LICENSE.nrt-EUPL-1.2.txt"
    with tarfile.open(sdist) as tar, tar.extractfile(sd.NRT_LICENSE_MEMBER) as src:  # type: ignore[union-attr]
        assert licence.read_bytes() == src.read()
    assert sd.CREDIT in (sample_dir / "README.md").read_text()
