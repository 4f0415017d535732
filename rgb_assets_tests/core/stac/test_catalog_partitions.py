"""The static catalog updated one partition at a time: what pystac reads back is exactly the
partitions' current items, with valid relative links, whatever the order of updates."""

from __future__ import annotations

from pathlib import Path

import pystac

from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.catalog import StaticCatalog, derived_collection
from rgb_assets.core.storage.store import Store


def _item(n: int, aoi: str, month: Month, x: float) -> pystac.Item:
    item = pystac.Item(
        id=f"{aoi}_{month.key}_{n}",
        geometry={"type": "Point", "coordinates": [x, 45.0]},
        bbox=[x, 45.0, x + 0.1, 45.1],
        datetime=None,
        properties={
            "start_datetime": f"{month.key}-01T00:00:00Z",
            "end_datetime": f"{month.key}-1{n}T00:00:00Z",
        },
    )
    item.add_asset("data", pystac.Asset(href=f"/elsewhere/{aoi}/{n}.tif"))
    return item


def test_partition_updates_read_back_exactly(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    cat = StaticCatalog(store, "catalogs/derived", "Derived", "d")
    template = derived_collection(get_collection("sentinel-2-l2a"))
    expected: dict[tuple[str, str], set[str]] = {}
    for aoi, x in (("a", 22.0), ("b", 23.0)):
        for m in (6, 7, 8):
            month = Month(2019, m)
            items = [_item(n, aoi, month, x) for n in range(3)]
            cat.replace_partition(template, aoi, month, items)
            expected[(aoi, month.key)] = {i.id for i in items}
    # Replace one partition with fewer items, unpublish another.
    update = cat.replace_partition(
        template, "a", Month(2019, 7), [_item(9, "a", Month(2019, 7), 21.0)]
    )
    assert len(update.removed) == 3 and len(update.item_keys) == 1
    expected[("a", "2019-07")] = {"a_2019-07_9"}
    update = cat.replace_partition(template, "b", Month(2019, 8), [])
    assert len(update.removed) == 3 and not update.item_keys
    expected[("b", "2019-08")] = set()
    for key in update.removed:
        assert not store.exists(key)

    root = pystac.Catalog.from_file(str(tmp_path / "catalogs/derived/catalog.json"))
    (collection,) = root.get_children()
    seen: dict[tuple[str, str], set[str]] = {}
    for item in collection.get_items():
        aoi, month, _ = item.id.split("_")
        seen.setdefault((aoi, month), set()).add(item.id)
        assert item.collection_id == collection.id
        assert Path(item.get_self_href()).exists()
        assert Path(item.assets["data"].get_absolute_href()) == Path(
            f"/elsewhere/{aoi}/{item.id[-1]}.tif"
        )
        assert item.get_root().id == root.id
    assert seen == {k: v for k, v in expected.items() if v}
    # Every link in the files is relative (a self-contained catalog), and the extent covers all.
    for path in tmp_path.rglob("*.json"):
        assert str(tmp_path) not in path.read_text(), path
    assert collection.extent.spatial.bboxes[0] == [21.0, 45.0, 23.1, 45.1]
    root.validate_all()
