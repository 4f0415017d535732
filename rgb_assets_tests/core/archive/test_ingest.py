"""Ingest on the real sample COGs: clip keeps the native grid and values, full copies bytes,
declared sizes/checksums are enforced before anything reaches the store, re-runs are skipped."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds
from rio_cogeo.cogeo import cog_validate

from rgb_assets.core.archive.ingest import ingest_item
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import SENTINEL2_L2A, get_collection, resolve_item
from rgb_assets.core.domain.errors import ChecksumError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store

ITEM_ID = "S2_L2A_RO_SAMPLE_20150801"
MONTH = Month(2015, 8)
ASSETS = ("red", "green", "blue", "scl")
#: Source asset key -> the role the archive keys it by.
ROLE = {"red": "red", "green": "green", "blue": "blue", "scl": "mask"}
# Inside the 100 x 100 px sample scene (lon 22.1449-22.1595, lat 45.1996-45.2100).
AOI = Aoi.create(
    "ingest-test",
    {
        "type": "Polygon",
        "coordinates": [
            [
                [22.148, 45.202],
                [22.155, 45.202],
                [22.155, 45.207],
                [22.148, 45.207],
                [22.148, 45.202],
            ]
        ],
    },
)


def _sample_item(sample_dir: Path, tmp_path: Path, **edits: dict[str, object]) -> pystac.Item:
    """A private copy of the sample item (and its COGs), with ``edits`` applied per asset."""
    folder = tmp_path / "source" / ITEM_ID
    shutil.copytree(sample_dir / ITEM_ID, folder)
    path = folder / f"{ITEM_ID}.json"
    d = json.loads(path.read_text())
    for key, fields in edits.items():
        for name, value in fields.items():
            if value is None:
                d["assets"][key].pop(name, None)
            else:
                d["assets"][key][name] = value
    path.write_text(json.dumps(d))
    return pystac.Item.from_file(str(path))


def _ingest(item: pystac.Item, store: Store, mode: str = "clip"):
    # The source catalog's folder is the one local root its assets may be read from.
    root = str(Path(item.get_self_href()).parents[1])
    return ingest_item(
        resolve_item(item, SENTINEL2_L2A), AOI, MONTH, store, "s2", mode=mode, read_roots=(root,)
    )


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _archived(store: Store, name: str) -> Path:
    return store.local_path(f"{PartitionPaths('s2', AOI.name, MONTH).scene_dir(ITEM_ID)}/{name}")


def test_clip_is_a_cog_on_the_native_grid_with_the_source_pixels(sample_dir, tmp_path):
    item = _sample_item(sample_dir, tmp_path)
    store = Store(tmp_path / "store")
    outcome = _ingest(item, store)
    assert outcome.status == "archived"
    # The sample declares file:size, which clip mode checks without reading the whole file.
    assert outcome.source_verification == dict.fromkeys(ASSETS, "size")
    assert "checksum" not in outcome.source_verification.values()
    for key in ASSETS:
        path = _archived(store, f"{ROLE[key]}.tif")
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors
        with (
            rasterio.open(item.assets[key].get_absolute_href()) as src,
            rasterio.open(path) as out,
        ):
            assert out.crs == src.crs
            assert out.res == src.res
            assert out.dtypes == src.dtypes
            assert out.nodata == src.nodata
            assert 0 < out.width < src.width and 0 < out.height < src.height
            # Aligned to the source grid: the origin is a whole number of source pixels away.
            col = (out.transform.c - src.transform.c) / src.transform.a
            row = (out.transform.f - src.transform.f) / src.transform.e
            assert col == pytest.approx(round(col), abs=1e-6)
            assert row == pytest.approx(round(row), abs=1e-6)
            window = (
                from_bounds(*out.bounds, transform=src.transform).round_offsets().round_lengths()
            )
            assert (window.width, window.height) == (out.width, out.height)
            np.testing.assert_array_equal(out.read(), src.read(window=window))
        asset = outcome.item.assets[ROLE[key]]
        assert asset.extra_fields["file:size"] == path.stat().st_size
        assert asset.extra_fields["proj:shape"] == [out.height, out.width]


def test_full_copies_bytes_and_records_size_and_checksum(sample_dir, tmp_path):
    item = _sample_item(sample_dir, tmp_path)
    store = Store(tmp_path / "store")
    outcome = _ingest(item, store, mode="full")
    assert outcome.status == "archived"
    assert outcome.source_verification == dict.fromkeys(ASSETS, "checksum")
    assert outcome.source_verification == dict.fromkeys(outcome.source_verification, "checksum")
    assert sorted(outcome.source_verification) == sorted(ASSETS)
    total = 0
    for key in ASSETS:
        source = Path(item.assets[key].get_absolute_href()).read_bytes()
        copy = _archived(store, f"{ROLE[key]}.tif").read_bytes()
        assert copy == source
        asset = outcome.item.assets[ROLE[key]]
        assert asset.extra_fields["file:size"] == len(source)
        assert asset.extra_fields["file:checksum"] == "1220" + hashlib.sha256(source).hexdigest()
        total += len(source)
    assert outcome.bytes_written == total


def test_archived_item_is_keyed_by_role_with_resolved_radiometry(sample_dir, tmp_path):
    """Resolved once: the archive's item names assets by role and carries scale, offset and
    nodata, so the engine loads it as it is and resolve_item needs no provider rule."""
    item = _sample_item(sample_dir, tmp_path)
    outcome = _ingest(item, Store(tmp_path / "store"))
    archived = outcome.item
    assert set(archived.assets) == {"red", "green", "blue", "mask"}
    for role in ("red", "green", "blue"):
        (band,) = archived.assets[role].extra_fields["raster:bands"]
        assert band["scale"] == pytest.approx(1e-4) and "offset" in band and band["nodata"] == 0
    (mask,) = archived.assets["mask"].extra_fields["raster:bands"]
    assert "scale" not in mask and mask["data_type"] == "uint8"
    again = resolve_item(archived, get_collection("sentinel-2-l2a"))
    source = resolve_item(item, get_collection("sentinel-2-l2a"))
    assert again.asset_keys == {"red": "red", "green": "green", "blue": "blue", "mask": "mask"}
    for role in ("red", "green", "blue"):
        got, want = again.bands[role], source.bands[role]
        assert (got.scale, got.offset, got.nodata) == (want.scale, want.offset, want.nodata)


def test_clip_without_declared_size_is_reported_unverifiable(sample_dir, tmp_path):
    item = _sample_item(sample_dir, tmp_path, green={"file:size": None, "file:checksum": None})
    outcome = _ingest(item, Store(tmp_path / "store"))
    assert outcome.source_verification["green"] == "unverifiable"
    assert outcome.source_verification["red"] == "size"


_WRONG_SHA256 = "1220" + "00" * 32


@pytest.mark.parametrize(
    ("mode", "edit", "message"),
    [
        ("full", {"file:checksum": _WRONG_SHA256}, "file:checksum"),
        ("full", {"file:size": 1234}, "file:size"),
        ("clip", {"file:size": 1234}, "file:size"),
    ],
)
def test_source_mismatch_names_the_asset_and_writes_nothing(
    sample_dir, tmp_path, mode, edit, message
):
    # The last asset read is wrong, so the others were already read and staged.
    item = _sample_item(sample_dir, tmp_path, scl=edit)
    root = tmp_path / "store"
    with pytest.raises(ChecksumError, match=rf"asset 'scl'.*{message}"):
        _ingest(item, Store(root), mode=mode)
    assert _files(root) == []


def test_reingest_of_intact_archive_is_skipped_and_damage_is_repaired(sample_dir, tmp_path):
    item = _sample_item(sample_dir, tmp_path)
    store = Store(tmp_path / "store")
    first = _ingest(item, store)
    red = _archived(store, "red.tif")
    mtime = red.stat().st_mtime_ns
    again = _ingest(item, store)
    assert again.status == "intact" and again.bytes_written == 0
    assert again.item.id == first.item.id
    assert again.item.assets["red"].extra_fields == first.item.assets["red"].extra_fields
    assert red.stat().st_mtime_ns == mtime
    # A damaged archive is not intact: the asset is archived again.
    red.write_bytes(red.read_bytes()[:-10])
    repaired = _ingest(item, store)
    assert repaired.status == "archived"
    assert red.read_bytes() != b"" and cog_validate(str(red), quiet=True)[0]


@pytest.mark.parametrize("mode", ["full", "clip"])
@pytest.mark.parametrize("garbage", ["not-a-multihash", "1220abcd", "", "12"])
def test_garbage_checksum_is_an_error_not_unverifiable(sample_dir, tmp_path, mode, garbage):
    """Issue 13 #6: a garbage file:checksum used to count as "unverifiable"."""
    item = _sample_item(sample_dir, tmp_path, green={"file:checksum": garbage})
    root = tmp_path / "store"
    with pytest.raises(ChecksumError, match=r"asset 'green'.*file:checksum"):
        _ingest(item, Store(root), mode=mode)
    assert _files(root) == []


def test_checksum_of_an_unknown_algorithm_is_unverifiable_not_an_error(sample_dir, tmp_path):
    # A well-formed multihash (code 0x1e, blake3) that we cannot compute.
    item = _sample_item(sample_dir, tmp_path, green={"file:checksum": "1e20" + "ab" * 32})
    outcome = _ingest(item, Store(tmp_path / "store"), mode="full")
    assert outcome.source_verification["green"] == "size"  # the declared size still matched
    assert outcome.source_verification["red"] == "checksum"


def _nearest_sample(level: np.ndarray, data: np.ndarray, factor: int) -> bool:
    """Every pixel of an overview ``level`` is a pixel of ``data`` near its own position:
    within half the factor (GDAL builds a level from the one before, so a rounded-up size
    shifts the sample by up to a pixel per level)."""
    (h, w), (oh, ow) = data.shape, level.shape
    ys = np.floor(np.arange(oh) * h / oh).astype(int)
    xs = np.floor(np.arange(ow) * w / ow).astype(int)
    reach = range(-max(1, factor // 2), max(1, factor // 2) + 1)
    found = np.zeros(level.shape, bool)
    for dy in reach:
        for dx in reach:
            rows, cols = np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)
            found |= data[np.ix_(rows, cols)] == level
    return bool(found.all())


@pytest.mark.parametrize(
    "shape",
    [(2048, 2048), (1024, 1024), (700, 1500), (1000, 1004), (513, 40), (512, 512), (2105, 1999)],
)
def test_clip_overviews_are_the_cog_drivers_levels_built_in_memory(tmp_path, shape):
    """``clip_to_cog`` builds the clip's nearest overviews in memory before the COG copy (half
    the time): the COG driver's levels, each level the size ``gdaladdo`` makes (rounded up) and
    a nearest sample of the clip; where the sides divide by every factor, the very pixels the
    COG driver makes by itself."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from rgb_assets.core.archive.ingest import ARCHIVE_COG, clip_to_cog

    h, w = shape
    data = np.random.default_rng(h * w).integers(1, 65535, (1, h, w)).astype("uint16")
    profile = dict(driver="GTiff", height=h, width=w, count=1, dtype="uint16", nodata=0,
                   crs="EPSG:32633", transform=from_origin(500000, 5000000, 10, 10))  # fmt: skip
    source = tmp_path / "source.tif"
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(data)
    # Reference: the COG driver building its own overviews from the same pixels.
    reference = tmp_path / "reference.tif"
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data)
        with mem.open() as tmp:
            rasterio.shutil.copy(tmp, str(reference), driver="COG", **ARCHIVE_COG)
    with rasterio.open(source) as src:
        bbox = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    clip = tmp_path / "clip.tif"
    assert clip_to_cog(str(source), bbox, clip) is not None
    with rasterio.open(reference) as ref, rasterio.open(clip) as out:
        assert out.shape == ref.shape == (h, w)
        assert out.overviews(1) == ref.overviews(1)
        assert (len(ref.overviews(1)) > 0) == (max(h, w) > 512)
        np.testing.assert_array_equal(out.read(), data)
        factors = ref.overviews(1)
    divisible = all(h % f == 0 == w % f for f in factors)
    for level, factor in enumerate(factors):
        with (
            rasterio.open(reference, overview_level=level) as a,
            rasterio.open(clip, overview_level=level) as b,
        ):
            got = b.read(1)
            assert got.shape == (math.ceil(h / factor), math.ceil(w / factor))
            assert _nearest_sample(got, data[0], factor)
            if divisible:
                np.testing.assert_array_equal(a.read(1), got)
    assert cog_validate(str(clip), quiet=True)[0]
