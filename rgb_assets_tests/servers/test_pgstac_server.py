"""The test STAC API answers the searches the pipeline makes: bbox + datetime + CQL2 filter on
eo:cloud_cover, paging, and items published live through Transactions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pystac
import pytest
from pystac.extensions.eo import EOExtension
from pystac_client import Client
from shapely.geometry import box, mapping

from rgb_assets_tests.servers.pgstac import PgStacServer

pytestmark = pytest.mark.live

COLLECTION_ID = "pgstac-server-test"
LIVE_COLLECTION_ID = "pgstac-server-test-live"
N_ITEMS = 25
START = datetime(2024, 6, 1, 10, 30, tzinfo=UTC)
# Two neighbouring tiles; searches use the western one.
WEST = (11.0, 46.0, 11.5, 46.5)
EAST = (11.6, 46.0, 12.1, 46.5)
SEARCH_BBOX = (10.9, 45.9, 11.55, 46.6)
SEARCH_RANGE = "2024-06-01T00:00:00Z/2024-06-20T23:59:59Z"
MAX_CLOUD = 20
CLOUD_FILTER = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, MAX_CLOUD]}


@dataclass(frozen=True)
class Scene:
    id: str
    tile: tuple[float, float, float, float]
    when: datetime
    cloud: float


def _scenes() -> list[Scene]:
    """Varied cloud cover over two tiles and 25 days, so each search criterion excludes some."""
    return [
        Scene(
            id=f"scene-{i:02d}",
            tile=WEST if i % 2 == 0 else EAST,
            when=START + timedelta(days=i),
            cloud=float((i * 37) % 100),
        )
        for i in range(N_ITEMS)
    ]


def _collection(collection_id: str) -> pystac.Collection:
    extent = pystac.Extent(
        pystac.SpatialExtent([[WEST[0], WEST[1], EAST[2], EAST[3]]]),
        pystac.TemporalExtent([[START, None]]),
    )
    collection = pystac.Collection(
        id=collection_id,
        description="Synthetic scenes for the pgstac test server",
        extent=extent,
        license="CC0-1.0",
    )
    EOExtension.add_to(collection)
    return collection


def _item(scene: Scene, collection_id: str) -> pystac.Item:
    geometry = box(*scene.tile)
    item = pystac.Item(
        id=scene.id,
        geometry=mapping(geometry),
        bbox=list(geometry.bounds),
        datetime=scene.when,
        properties={},
        collection=collection_id,
    )
    EOExtension.ext(item, add_if_missing=True).cloud_cover = scene.cloud
    item.add_asset(
        "visual",
        pystac.Asset(
            href=f"https://example.invalid/{scene.id}/visual.tif",
            media_type=pystac.MediaType.COG,
            roles=["data"],
        ),
    )
    return item


def _item_dict(scene: Scene, collection_id: str) -> dict:
    return _item(scene, collection_id).to_dict(include_self_link=False, transform_hrefs=False)


@pytest.fixture(scope="module")
def loaded(pgstac: PgStacServer) -> PgStacServer:
    """The shared server with this module's collection and 25 items upserted."""
    pgstac.load_collection(_collection(COLLECTION_ID).to_dict(transform_hrefs=False))
    pgstac.load_items([_item_dict(s, COLLECTION_ID) for s in _scenes()])
    return pgstac


def _in_search(scene: Scene) -> bool:
    """Reference answer for the bbox + datetime + cloud search, computed locally."""
    in_bbox = box(*scene.tile).intersects(box(*SEARCH_BBOX))
    in_range = START <= scene.when <= datetime(2024, 6, 20, 23, 59, 59, tzinfo=UTC)
    return in_bbox and in_range and scene.cloud <= MAX_CLOUD


def test_bbox_datetime_and_cloud_filter(loaded: PgStacServer) -> None:
    client = Client.open(loaded.url)
    search = client.search(
        collections=[COLLECTION_ID],
        bbox=SEARCH_BBOX,
        datetime=SEARCH_RANGE,
        filter=CLOUD_FILTER,
    )
    found = {item.id: item for item in search.items()}

    expected = {s.id for s in _scenes() if _in_search(s)}
    assert expected, "test data must leave something to find"
    assert len(expected) < N_ITEMS // 2, "each criterion must exclude something"
    assert set(found) == expected
    for item in found.values():
        cloud = EOExtension.ext(item).cloud_cover
        assert cloud is not None and cloud <= MAX_CLOUD


def test_paging_returns_every_item(loaded: PgStacServer) -> None:
    client = Client.open(loaded.url)
    search = client.search(collections=[COLLECTION_ID], limit=10)

    pages = list(search.pages())
    assert [len(page.items) for page in pages] == [10, 10, 5]
    assert search.matched() == N_ITEMS  # numberMatched: the pgstac `context` setting is on

    ids = [item.id for item in client.search(collections=[COLLECTION_ID], limit=10).items()]
    assert len(ids) == N_ITEMS
    assert set(ids) == {s.id for s in _scenes()}


def test_add_item_via_transactions_is_searchable(pgstac: PgStacServer) -> None:
    pgstac.load_collection(_collection(LIVE_COLLECTION_ID).to_dict(transform_hrefs=False))
    client = Client.open(pgstac.url)

    def clear_scenes() -> set[str]:
        search = client.search(
            collections=[LIVE_COLLECTION_ID], bbox=SEARCH_BBOX, filter=CLOUD_FILTER
        )
        return {item.id for item in search.items()}

    assert clear_scenes() == set()

    scene = Scene(id="live-scene", tile=WEST, when=START + timedelta(days=3), cloud=5.0)
    pgstac.add_item(_item_dict(scene, LIVE_COLLECTION_ID))

    assert clear_scenes() == {"live-scene"}
    fetched = client.get_collection(LIVE_COLLECTION_ID).get_item("live-scene")
    assert fetched is not None
    assert EOExtension.ext(fetched).cloud_cover == 5.0
