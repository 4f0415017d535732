"""Downloads cut off half-way (issue 13 #5, #9): a real HTTP server in another process serves
the sample's scenes, announces each file's whole ``Content-Length`` and closes the connection
after half of the bytes. Nothing of the item reaches the store, the error names the item, the
asset and its href, the read is not retried within the run, and once the server sends whole
files the next archive stores the item with matching checksums."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pystac
import pytest

from rgb_assets.core.archive.ingest import AssetReadError
from rgb_assets.core.archive.partition import archive_partition
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.source import LocalStacSource
from rgb_assets.core.storage import checksums
from rgb_assets.core.storage.store import Store
from rgb_assets_tests.published import staging_left
from rgb_assets_tests.servers.files import file_server

REPO = Path(__file__).resolve().parents[3]
MONTH = Month(2019, 3)  # two sample scenes


def _served_catalog(sample_dir: Path, url: str, dest: Path) -> Path:
    """The sample collection saved to ``dest`` with every asset href on the HTTP server."""
    collection = pystac.Collection.from_file(str(sample_dir / "collection.json")).full_copy()
    for item in collection.get_items():
        for asset in item.assets.values():
            local = Path(asset.get_absolute_href() or "").resolve()
            asset.href = f"{url}/{local.relative_to(sample_dir.resolve()).as_posix()}"
    collection.normalize_hrefs(str(dest))
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    return dest / "collection.json"


@pytest.mark.parametrize("mode", ["full", "clip"])
def test_cut_off_download_stores_nothing_and_a_rerun_archives_it(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    aoi = Aoi.create("cut-off", json.loads((REPO / "data" / "sample_aoi.geojson").read_text()))
    spec = get_collection("sentinel-2-l2a")
    root = tmp_path / "store"
    store = Store(root)
    with file_server(sample_dir, cut_fraction=0.5) as server:
        source = LocalStacSource(_served_catalog(sample_dir, server.url, tmp_path / "source"))
        with pytest.raises(AssetReadError) as failed:
            archive_partition(source, spec, aoi, MONTH, store, mode=mode)  # type: ignore[arg-type]
        message = str(failed.value)
        assert "asset 'red'" in message and f"{server.url}/S2_L2A_RO_SAMPLE_2019032" in message
        assert "read failed" in message, message
        stats = server.stats()
        assert stats["cut"] >= 1
        # No retry within the run: each asset that was read was requested once.
        assert set(stats["requests"].values()) == {1}, stats
        assert not [p for p in root.rglob("*") if p.is_file()], "partial files in the store"
        assert staging_left(tmp_path / "tmp") == []

        server.set_cut(1.0)
        raw = archive_partition(source, spec, aoi, MONTH, store, mode=mode)  # type: ignore[arg-type]
    assert raw.stats["archived"] == 2 and raw.skipped == []
    for item in raw.items:
        for role, asset in item.assets.items():
            path = Path(asset.href)
            assert checksums.multihash_sha256(path) == asset.extra_fields["file:checksum"]
            if mode == "full":  # a whole copy is the served file, byte for byte
                band = "scl" if role == "mask" else role
                original = sample_dir / item.id / f"{band}.tif"
                assert checksums.multihash_sha256(path) == checksums.multihash_sha256(original)
    assert staging_left(tmp_path / "tmp") == []
