"""Publishing a partition to a live Transactions STAC API (pgstac) is idempotent."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pystac
import pytest
from pystac_client import Client

from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.errors import StacSourceError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.catalog import derived_collection
from rgb_assets.core.stac.publish import StacPublisher, api_collection_id
from rgb_assets.core.storage.layout import PartitionPaths
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
    publisher.close()
    assert publisher.client.is_closed

    # The collection's extent covers the item instead of the global placeholder.
    col = httpx.get(f"{pgstac.url}/collections/{collection.id}").json()
    bbox = col["extent"]["spatial"]["bbox"][0]
    assert bbox == pytest.approx(published.bbox)
    (start, end) = col["extent"]["temporal"]["interval"][0]
    assert start.startswith("2019-06-01") and end.startswith("2019-06-30"), (start, end)

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
    with StacPublisher(pgstac.url) as publisher:
        third = publisher.replace_partition(collection, "publish-check", MONTH, [])
    assert third.deleted == [published.id]
    r = httpx.get(f"{pgstac.url}/collections/{collection.id}/items/{published.id}")
    assert r.status_code == 404


def _fake_items(template: pystac.Item, aoi: str, n: int) -> list[pystac.Item]:
    out = []
    for k in range(n):
        item = template.full_copy()
        item.id = f"{aoi}-stale-{k}"
        item.properties["rgb_assets:aoi"] = aoi
        item.properties["rgb_assets:month"] = MONTH.key
        out.append(item)
    return out


def test_stale_items_are_deleted_through_every_page(pgstac, sample_dir: Path):
    """Seven items of a partition, re-published as two: the five stale ones are found across
    four pages of two and deleted, and the raw collection gets an id of its own."""
    _, item = produce_partition(sample_dir, "publish-pages", MONTH)
    collection = derived_collection(get_collection("sentinel-2-l2a"))
    collection.id = "publish-pages-raw"
    seven = _fake_items(item, "publish-pages", 7)
    with StacPublisher(pgstac.url, page_size=2) as publisher:
        first = publisher.replace_partition(collection, "publish-pages", MONTH, seven, kind="raw")
        assert first.collection == api_collection_id(collection.id, "raw")
        assert first.collection == "rgb-assets-raw-publish-pages-raw"
        assert len(first.inserted) == 7
        assert len(publisher.partition_ids(first.collection, "publish-pages", MONTH)) == 7
        again = publisher.replace_partition(
            collection, "publish-pages", MONTH, seven[:2], kind="raw"
        )
    assert sorted(again.deleted) == sorted(i.id for i in seven[2:])
    assert again.updated == [i.id for i in seven[:2]]
    left = Client.open(pgstac.url).search(collections=[first.collection], limit=100)
    assert sorted(i.id for i in left.items()) == sorted(i.id for i in seven[:2])
    assert httpx.get(f"{pgstac.url}/collections/{collection.id}").status_code == 404


@contextmanager
def _proxy(
    upstream: str, answer: Callable[[str, str], int | None]
) -> Iterator[tuple[list[str], str]]:
    """A real HTTP proxy in front of the API; ``answer(method, path)`` may replace the API's
    answer with a bare status code. Yields its log (``METHOD path -> status``) and URL."""
    log: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            code = answer(self.command, self.path)
            if code is not None:
                out = json.dumps({"detail": f"proxy says {code}"}).encode()
            else:
                r = httpx.request(
                    self.command,
                    upstream + self.path,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                code, out = r.status_code, r.content
            log.append(f"{self.command} {self.path.split('?')[0]} -> {code}")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield log, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("code", [401, 503])
def test_collection_is_not_created_when_the_api_fails_otherwise_than_404(pgstac, code):
    collection = derived_collection(get_collection("sentinel-2-l2a"))
    collection.id = f"publish-refused-{code}"

    def refuse(method: str, path: str) -> int | None:
        return code if method == "GET" and path.startswith("/collections/") else None

    with (
        _proxy(pgstac.url, refuse) as (log, url),
        StacPublisher(url) as publisher,
        pytest.raises(StacSourceError, match=f"read collection {collection.id}.*{code}"),
    ):
        publisher.ensure_collection(collection)
    assert not any(line.startswith("POST") for line in log), log
    assert httpx.get(f"{pgstac.url}/collections/{collection.id}").status_code == 404


def test_collection_created_concurrently_counts_as_existing(pgstac):
    """Another partition creates the collection between our 404 and our POST: the API's 409
    means it exists."""
    collection = derived_collection(get_collection("sentinel-2-l2a"))
    collection.id = "publish-concurrent"
    with StacPublisher(pgstac.url) as other:
        assert other.ensure_collection(collection)

    def missing(method: str, path: str) -> int | None:
        return 404 if method == "GET" and path == f"/collections/{collection.id}" else None

    with _proxy(pgstac.url, missing) as (log, url), StacPublisher(url) as publisher:
        assert publisher.ensure_collection(collection) is False
    assert log == [f"GET /collections/{collection.id} -> 404", "POST /collections -> 409"]


def test_dagster_catalogs_resource_publishes_partition_to_the_api(
    pgstac, sample_dir: Path, tmp_path: Path
):
    """raw_scenes → derived_catalog for one AOI × month, materialized twice in process with the
    catalogs resource's publish URL set to the live API: the derived collection holds one
    searchable item whose files open, and the raw collection (an id of its own, not the
    source's) exactly the archived items."""
    import rasterio
    from dagster import DagsterInstance, materialize

    from rgb_assets.aois import register_aoi
    from rgb_assets.assets import ALL_ASSETS
    from rgb_assets.config import Settings
    from rgb_assets.definitions import pipeline_resources
    from rgb_assets.partitions import partition_key

    name, month = "carpathians-sample", Month(2019, 7)
    feature = json.loads((sample_dir.parents[1] / "data" / "sample_aoi.geojson").read_text())
    settings = Settings(
        stac_url=str(sample_dir / "collection.json"),
        storage_root=str(tmp_path / "store"),
        publish_url=pgstac.url,
    )
    resources = pipeline_resources(settings)
    storage = resources["storage"]
    runs = []
    with DagsterInstance.ephemeral() as instance:
        register_aoi(storage.aois(), instance, name, feature)
        for _ in range(2):
            result = materialize(
                ALL_ASSETS,
                partition_key=partition_key(name, month),
                resources=resources,
                instance=instance,
            )
            assert result.success
            runs.append(result.asset_materializations_for_node("derived_catalog"))
    published = [m.metadata for (m,) in runs]
    assert published[0]["api_inserted"].value == 1 and published[1]["api_updated"].value == 1

    client = Client.open(pgstac.url)
    derived_id = derived_collection(get_collection("sentinel-2-l2a")).id
    found = list(
        client.search(
            collections=[derived_id], intersects=feature["geometry"], datetime=month.stac_interval()
        ).items()
    )
    assert [i.id for i in found] == [f"{name}_{month.key}_sentinel-2-l2a"]
    rasters = {
        k: a for k, a in found[0].assets.items() if a.media_type and "image/" in a.media_type
    }
    assert len(rasters) >= 2, found[0].assets  # analysis COG, visual COG, thumbnail
    for key, asset in rasters.items():
        with rasterio.open(asset.href) as src:
            assert src.width > 0 and src.count >= 1, key

    raw_id = api_collection_id("sentinel-2-l2a", "raw")
    assert raw_id == "rgb-assets-raw-sentinel-2-l2a"
    raw_api = {i.id for i in client.search(collections=[raw_id], limit=100).items()}
    manifest = json.loads(
        (tmp_path / "store" / PartitionPaths("sentinel-2-l2a", name, month).manifest).read_text()
    )
    archived = {f"{f['id']}__{name}" for f in manifest["features"]}
    assert len(archived) == 5 and raw_api == archived
    # Nothing went into a collection with the source's id (it would be searched as scenes).
    for item_id in archived:
        url = f"{pgstac.url}/collections/sentinel-2-l2a/items/{item_id}"
        assert httpx.get(url).status_code == 404
