"""widen: a collection extent becomes the union of what it had and the new items'."""

from __future__ import annotations

from datetime import UTC, datetime

import pystac

from rgb_assets.core.stac.extent import widen


def _item(item_id: str, bbox: list[float], when: datetime) -> pystac.Item:
    x0, y0, x1, y1 = bbox
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return pystac.Item(item_id, {"type": "Polygon", "coordinates": [ring]}, bbox, when, {})


def _extent(bbox: list[float], start: datetime | None, end: datetime | None) -> pystac.Extent:
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[start, end]]))


JULY = datetime(2019, 7, 10, tzinfo=UTC)
MARCH = datetime(2019, 3, 5, tzinfo=UTC)


def test_fresh_collection_gets_the_items_extent():
    items = [_item("a", [1, 2, 3, 4], JULY), _item("b", [0, 3, 2, 5], MARCH)]
    ext = widen(None, items)
    assert ext.spatial.bboxes == [[0, 2, 3, 5]]
    assert ext.temporal.intervals == [[MARCH, JULY]]


def test_union_with_the_current_extent():
    current = _extent([10, 10, 11, 11], MARCH, MARCH)
    ext = widen(current, [_item("a", [1, 2, 3, 4], JULY)])
    assert ext.spatial.bboxes == [[1, 2, 11, 11]]
    assert ext.temporal.intervals == [[MARCH, JULY]]


def test_items_inside_the_current_extent_never_shrink_it():
    current = _extent([0, 0, 10, 10], MARCH, datetime(2020, 1, 1, tzinfo=UTC))
    ext = widen(current, [_item("a", [1, 2, 3, 4], JULY)])
    assert ext.spatial.bboxes == [[0, 0, 10, 10]]
    assert ext.temporal.intervals == current.temporal.intervals


def test_missing_current_bounds_are_taken_from_the_items():
    current = _extent([0, 0, 10, 10], None, None)
    ext = widen(current, [_item("a", [1, 2, 3, 4], JULY)])
    assert ext.temporal.intervals == [[JULY, JULY]]
