"""Publishing a partition to a live Transactions STAC API (pgstac) is idempotent."""

from __future__ import annotations

from pathlib import Path

import httpx
import pystac
import pytest
from pystac_client import Client

from rgb_assets.core.catalogs import derived_collection
from rgb_assets.core.collections import get_collection
from rgb_assets.core.months import Month
from rgb_assets.core.publish import StacPublisher
from rgb_assets_tests.producer import produce_partition

pytestmark = pytest.mark.live
MONTH = Month(2019, 6)


def test_publish_is_idempotent_and_searchable(pgstac, sample_dir: Path):
    store, item = produce_partition(sample_dir, "publish-check", MONTH)
    cat = pystac.Catalog.from_file(store.uri("catalogs/derived/catalog.json"))
    published = next(cat.get_items(recursive=True))
    collection = derived_collection(get_collection("sentinel-2-l2a"))
    publisher = StacPublisher(pgstac.url)
    first = publisher.replace_partition(collection, "publish-check", MONTH, [published])
    second = publisher.replace_partition(collection, "publish-check", MONTH, [published])
    assert first.created_collection and first.inserted == [published.id]
    assert not second.created_collection and second.updated == [published.id]

    client = Client.open(pgstac.url)
    feature = item.geometry
    found = list(
        client.search(
            collections=[collection.id], intersects=feature, datetime=MONTH.stac_interval()
        ).items()
    )
    assert [i.id for i in found] == [published.id]
    for key, asset in found[0].assets.items():
        href = asset.href
        assert href.startswith("file://"), key
        assert Path(href.removeprefix("file://")).exists(), key
    assert all(
        Path(lk.href.removeprefix("file://")).exists() for lk in found[0].get_links("derived_from")
    )

    # A re-run that finds no data unpublishes the partition.
    third = publisher.replace_partition(collection, "publish-check", MONTH, [])
    assert third.deleted == [published.id]
    r = httpx.get(f"{pgstac.url}/collections/{collection.id}/items/{published.id}")
    assert r.status_code == 404
