"""Collection extents: pystac's ``Extent.from_items``, widened to keep what was there."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pystac


def widen(current: pystac.Extent | None, items: Sequence[pystac.Item]) -> pystac.Extent:
    """The extent of ``items`` united with ``current`` (None: a fresh collection).

    Extents only grow: items replaced in a partition never shrink a collection's extent.
    """
    new = pystac.Extent.from_items(items)
    if current is None:
        return new
    b, c = new.spatial.bboxes[0], current.spatial.bboxes[0]
    bbox = [min(b[0], c[0]), min(b[1], c[1]), max(b[2], c[2]), max(b[3], c[3])]
    starts: list[datetime] = []
    ends: list[datetime] = []
    for lo, hi in (new.temporal.intervals[0], current.temporal.intervals[0]):
        if lo:
            starts.append(lo)
        if hi:
            ends.append(hi)
    return pystac.Extent(
        pystac.SpatialExtent([bbox]),
        pystac.TemporalExtent([[min(starts) if starts else None, max(ends) if ends else None]]),
    )
