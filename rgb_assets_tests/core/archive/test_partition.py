"""Archiving one AOI × month from a local static catalog: skips are recorded, not crashes, and
how each source asset was verified (checksum, size) is reported and kept in the manifest."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pystac
import pytest

from rgb_assets.core.archive.partition import archive_partition, read_manifest, write_manifest
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.errors import RefusedInputsError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.source import LocalStacSource
from rgb_assets.core.storage.store import Store

REPO = Path(__file__).resolve().parents[3]
MONTH = Month(2019, 7)  # five sample scenes intersect the sample AOI


@pytest.fixture(scope="module")
def aoi() -> Aoi:
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    return Aoi.create("archive-check", feature)


def _copy_catalog(sample_dir: Path, dest: Path, drop_mask_of: int | None) -> tuple[Path, str]:
    """The sample collection saved to ``dest`` (hrefs to the sample's COGs); the ``scl`` asset
    is removed from the month's ``drop_mask_of``-th scene. Returns the path and that item id."""
    collection = pystac.Collection.from_file(str(sample_dir / "collection.json"))
    collection = collection.full_copy()
    month_items = sorted(
        (i for i in collection.get_items() if i.datetime and MONTH.contains(i.datetime)),
        key=lambda i: i.datetime,
    )
    for item in collection.get_items():
        item.make_asset_hrefs_absolute()
    victim = ""
    if drop_mask_of is not None:
        victim = month_items[drop_mask_of].id
        del month_items[drop_mask_of].assets["scl"]
    collection.normalize_hrefs(str(dest))
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    return dest / "collection.json", victim


def test_item_without_mask_asset_is_skipped_and_the_rest_archived(sample_dir, aoi, tmp_path):
    path, victim = _copy_catalog(sample_dir, tmp_path / "source", drop_mask_of=2)
    source = LocalStacSource(path)
    saved = json.loads((path.parent / victim / f"{victim}.json").read_text())
    assert set(saved["assets"]) >= {"red", "green", "blue"} and "scl" not in saved["assets"]
    spec = get_collection("sentinel-2-l2a")
    store = Store(str(tmp_path / "store"))
    # The copied catalog's hrefs point at the sample's COGs: that folder must be allowed.
    raw = archive_partition(source, spec, aoi, MONTH, store, read_roots=(str(sample_dir),))

    assert raw.stats["found"] == 5
    assert raw.stats["archived"] == 4 and raw.stats["skipped"] == 1
    assert victim not in {i.id for i in raw.items} and len(raw.items) == 4
    (skip,) = raw.skipped
    assert skip["item"] == victim
    assert "mask" in skip["reason"] and "scl" in skip["reason"], skip["reason"]
    for item in raw.items:
        assert set(item.assets) == {"red", "green", "blue", "mask"}  # keyed by role
        assert all(Path(a.href.removeprefix("file://")).exists() for a in item.assets.values())

    # The skip survives the manifest that the next step (another process) reads.
    write_manifest(raw, store)
    again = read_manifest(store, spec.key, aoi.name, MONTH)
    assert again.skipped == raw.skipped and [i.id for i in again.items] == [i.id for i in raw.items]


def test_source_verification_is_reported_and_kept(sample_dir, aoi, tmp_path):
    path, _ = _copy_catalog(sample_dir, tmp_path / "source", drop_mask_of=None)
    spec = get_collection("sentinel-2-l2a")
    store = Store(str(tmp_path / "store"))
    roots = (str(sample_dir),)
    raw = archive_partition(
        LocalStacSource(path), spec, aoi, MONTH, store, mode="full", read_roots=roots
    )

    assert raw.stats["archived"] == 5
    # Every sample asset declares file:checksum and file:size: all four are verified per item.
    bands = ("red", "green", "blue", "scl")
    assert raw.source_verification == {i.id: dict.fromkeys(bands, "checksum") for i in raw.items}
    assert raw.stats["source_verified"] == {"checksum": 20, "size": 0, "unverifiable": 0}
    write_manifest(raw, store)
    assert (
        read_manifest(store, spec.key, aoi.name, MONTH).source_verification
        == raw.source_verification
    )

    # Clipped windows are new bytes: no checksum to compare, but the declared size is checked.
    clip = archive_partition(
        LocalStacSource(path), spec, aoi, MONTH, Store(str(tmp_path / "c")), read_roots=roots
    )
    assert clip.source_verification == {i.id: dict.fromkeys(bands, "size") for i in clip.items}
    assert clip.stats["source_verified"] == {"checksum": 0, "size": 20, "unverifiable": 0}


HOSTILE = ("file:///etc/passwd", "/etc/passwd", "../../../../../../../../etc/passwd")


@pytest.mark.parametrize("mode", ["full", "clip"])
def test_items_reading_outside_the_allowed_roots_are_refused_and_never_archived(
    sample_dir, aoi, tmp_path, mode
):
    """Issue 13 #1: an item whose asset href is /etc/passwd (absolute, file://, or ``..``) was
    copied into the store as red.bin in full mode and opened by GDAL in clip mode."""
    dest = tmp_path / "source"
    _copy_catalog(sample_dir, dest, drop_mask_of=None)
    month_items = sorted(
        (p for p in dest.glob("*/*.json")), key=lambda p: json.loads(p.read_text())["id"]
    )
    victims = []
    for path in month_items:
        d = json.loads(path.read_text())
        if not d["properties"]["datetime"].startswith("2019-07") or len(victims) == 3:
            continue
        d["assets"]["red"]["href"] = HOSTILE[len(victims)]
        path.write_text(json.dumps(d))
        victims.append(d["id"])
    store_root = tmp_path / "store"
    raw = archive_partition(
        LocalStacSource(dest / "collection.json"),
        get_collection("sentinel-2-l2a"),
        aoi,
        MONTH,
        Store(str(store_root)),
        mode=mode,
        read_roots=(str(sample_dir),),
    )
    assert raw.stats["refused"] == 3 and raw.stats["archived"] == 2
    refused = {s["item"]: s["reason"] for s in raw.skipped}
    assert set(refused) == set(victims)
    for reason in refused.values():
        assert reason.startswith("refused: asset 'red'") and "etc/passwd" in reason, reason
    assert not {i.id for i in raw.items} & set(victims)
    passwd = Path("/etc/passwd").read_bytes()
    for f in store_root.rglob("*"):
        assert not any(v in str(f) for v in victims), f
        if f.is_file():
            assert passwd not in f.read_bytes(), f


def test_a_month_whose_every_item_is_refused_fails_instead_of_no_data(sample_dir, aoi, tmp_path):
    """Scenes found but none archivable (every July item reads a local file outside the
    allowed roots, as a STAC API serving file hrefs without RGB_ASSETS_ALLOWED_ROOTS does) is
    a red failure naming the items and the setting, never a green "no data"."""
    dest = tmp_path / "source"
    _copy_catalog(sample_dir, dest, drop_mask_of=None)
    for path in dest.glob("*/*.json"):
        d = json.loads(path.read_text())
        if d["properties"]["datetime"].startswith("2019-07"):
            d["assets"]["red"]["href"] = str(sample_dir / "elsewhere" / "red.tif")
            path.write_text(json.dumps(d))
    store_root = tmp_path / "store"
    with pytest.raises(RefusedInputsError) as e:
        archive_partition(
            LocalStacSource(dest / "collection.json"),
            get_collection("sentinel-2-l2a"),
            aoi,
            MONTH,
            Store(str(store_root)),
        )
    assert len(e.value.refused) == 5 and "RGB_ASSETS_ALLOWED_ROOTS" in str(e.value)
    assert all("outside the allowed roots" in reason for _, reason in e.value.refused)
    assert not [f for f in store_root.rglob("*") if f.is_file()]


def test_whole_copy_that_is_not_the_claimed_raster_is_refused(sample_dir, aoi, tmp_path):
    """Full mode checks the copied bytes are the raster format the item claims."""
    dest = tmp_path / "source"
    _copy_catalog(sample_dir, dest, drop_mask_of=None)
    path = next(
        p
        for p in sorted(dest.glob("*/*.json"))
        if json.loads(p.read_text())["properties"]["datetime"].startswith("2019-07")
    )
    d = json.loads(path.read_text())
    fake = path.parent / "red.tif"
    fake.write_text("name,value\nnot,a raster\n")
    d["assets"]["red"]["href"] = str(fake)
    for k in ("file:checksum", "file:size"):
        d["assets"]["red"].pop(k, None)
    path.write_text(json.dumps(d))
    raw = archive_partition(
        LocalStacSource(dest / "collection.json"),
        get_collection("sentinel-2-l2a"),
        aoi,
        MONTH,
        Store(str(tmp_path / "store")),
        mode="full",
        read_roots=(str(sample_dir),),
    )
    (skip,) = [s for s in raw.skipped if s["item"] == d["id"]]
    assert "not a raster" in skip["reason"]
    assert raw.stats["archived"] == 4
    assert not list((tmp_path / "store").rglob(f"*{d['id']}*"))


def test_month_whose_items_all_lack_blue_fails_naming_asset_and_items(sample_dir, aoi, tmp_path):
    """Not a "no data" success: every item lacks ``blue``, so the step fails and says so."""
    from rgb_assets.core.domain.errors import MissingInputsError

    collection = pystac.Collection.from_file(str(sample_dir / "collection.json"))
    dest = tmp_path / "source"
    collection = collection.full_copy()
    for item in collection.get_items():
        item.make_asset_hrefs_absolute()
    month_items = [i for i in collection.get_items() if i.datetime and MONTH.contains(i.datetime)]
    for item in month_items:
        del item.assets["blue"]
    collection.normalize_hrefs(str(dest))
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    source = LocalStacSource(dest / "collection.json")
    spec, store = get_collection("sentinel-2-l2a"), Store(str(tmp_path / "s"))
    with pytest.raises(MissingInputsError) as err:
        archive_partition(source, spec, aoi, MONTH, store)
    msg = str(err.value)
    assert f"all {len(month_items)} items lack a required asset" in msg
    for item in month_items:
        assert f"item {item.id} has no 'blue' asset" in msg
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("*.tif"))


class _CountingPool(ThreadPoolExecutor):
    """A real thread pool that records the most tasks it held at once."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        future = super().submit(fn, *args, **kwargs)

        def done(_):  # type: ignore[no-untyped-def]
            with self.lock:
                self.running -= 1

        future.add_done_callback(done)
        return future


def _archived(raw) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    return {
        i.id: {k: a.extra_fields["file:checksum"] for k, a in i.assets.items()} for i in raw.items
    }


def test_scenes_archive_in_parallel_bounded_and_equal_to_one_at_a_time(sample_dir, aoi, tmp_path):
    from distributed import Client, LocalCluster

    path, _ = _copy_catalog(sample_dir, tmp_path / "source", drop_mask_of=None)
    spec = get_collection("sentinel-2-l2a")
    roots = (str(sample_dir),)  # the copied items point at the sample's files
    serial = archive_partition(
        LocalStacSource(path),
        spec,
        aoi,
        MONTH,
        Store(str(tmp_path / "one")),
        max_concurrency=1,
        read_roots=roots,
    )
    # At most max_concurrency scenes in flight, whatever the pool could take.
    with _CountingPool(8) as pool:
        bounded = archive_partition(
            LocalStacSource(path),
            spec,
            aoi,
            MONTH,
            Store(str(tmp_path / "two")),
            executor=pool,
            max_concurrency=2,
            read_roots=roots,
        )
    assert pool.peak == 2
    # As tasks on a real Dask cluster (worker processes), as inside a run.
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        clustered = archive_partition(
            LocalStacSource(path),
            spec,
            aoi,
            MONTH,
            Store(str(tmp_path / "three")),
            executor=client.get_executor(pure=False),
            read_roots=roots,
        )
    assert serial.stats["archived"] == bounded.stats["archived"] == clustered.stats["archived"] == 5
    # Same items, same order, byte-identical clips (same checksums) and same verification.
    assert _archived(serial) == _archived(bounded) == _archived(clustered)
    assert [i.id for i in serial.items] == [i.id for i in clustered.items]
    assert serial.source_verification == clustered.source_verification
    # A re-run finds every scene intact and archives nothing.
    again = archive_partition(
        LocalStacSource(path), spec, aoi, MONTH, Store(str(tmp_path / "three")), read_roots=roots
    )
    assert again.stats["intact"] == 5 and again.stats["bytes_written"] == 0
