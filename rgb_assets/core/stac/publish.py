"""Publish catalog items to a STAC API with the Transactions extension, idempotently.

Collections are created when missing (a 409 from a concurrent partition counts as created);
items are upserted (PUT when the id exists, POST otherwise), so re-running a partition never
duplicates. Items of the partition that are no longer produced are deleted (found with a CQL2
filter on the partition properties, through every page of the search). Asset and link hrefs
are made absolute first: relative hrefs mean nothing once served by an API. After each
partition the collection's extent is widened to cover its items.

Collection ids on the API: the raw archive is published as ``rgb-assets-raw-<key>`` (see
:func:`api_collection_id`), never under the source's own id (``sentinel-2-l2a``): when the
publish API is also the API scenes are searched in, archived clips in the source collection
would be found again as new scenes. Derived collections keep their id
(``<key>-monthly-rgb``), which no source uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pystac

from rgb_assets.core.domain.errors import StacSourceError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.extent import widen
from rgb_assets.core.stac.properties import AOI_PROP, MONTH_PROP

RAW_ID_PREFIX = "rgb-assets-raw-"
CatalogKind = Literal["raw", "derived"]


def api_collection_id(collection_id: str, kind: CatalogKind) -> str:
    """The id a catalog collection is published under (raw: prefixed, derived: unchanged)."""
    if kind == "raw" and not collection_id.startswith(RAW_ID_PREFIX):
        return f"{RAW_ID_PREFIX}{collection_id}"
    return collection_id


@dataclass
class PublishReport:
    collection: str = ""
    created_collection: bool = False
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def _absolute(href: str) -> str:
    if "://" in href:
        return href
    return Path(href).resolve().as_uri()


def api_ready(item: pystac.Item, collection_id: str) -> dict:
    """Item JSON for an API: absolute hrefs (file:// for local files), no hierarchy links."""
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    for key, asset in item.assets.items():
        d["assets"][key]["href"] = _absolute(asset.get_absolute_href() or asset.href)
    d["links"] = [
        {**lk, "href": _absolute(item_link.get_absolute_href() or lk["href"])}
        for lk, item_link in zip(d["links"], item.links, strict=False)
        if lk["rel"] not in ("root", "parent", "collection", "self")
    ]
    d["collection"] = collection_id
    bad = non_finite(d)
    if bad:
        raise ValueError(
            f"item {item.id}: JSON has no NaN or infinity, found at {', '.join(bad[:5])}"
        )
    return d


def non_finite(obj: Any, path: str = "") -> list[str]:
    """JSON paths of NaN/infinite numbers (strict JSON parsers and STAC APIs refuse them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return [path or "/"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite(v, f"{path}/{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in non_finite(v, f"{path}/{i}")]
    return []


def _is_placeholder(extent: dict[str, Any]) -> bool:
    """The extent a fresh catalog collection carries before it has items."""
    intervals = extent.get("temporal", {}).get("interval") or [[None, None]]
    return intervals[0] == [None, None]


def _widened_extent(current: dict[str, Any], items: Sequence[pystac.Item]) -> dict[str, Any]:
    """``current`` widened to cover ``items`` (replaced when it is still the placeholder)."""
    base = None if _is_placeholder(current) else pystac.Extent.from_dict(current)
    return widen(base, items).to_dict()


class StacPublisher:
    """Upserts items of one partition into a Transactions-enabled STAC API.

    Holds an HTTP connection pool: use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        page_size: int = 100,
    ) -> None:
        self.url = url.rstrip("/")
        self.page_size = page_size
        self.timeout = timeout
        self.headers = headers or {}
        self.client = httpx.Client(timeout=timeout, headers=self.headers)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> StacPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, r: httpx.Response, what: str) -> httpx.Response:
        if r.status_code >= 400:
            raise StacSourceError(self.url, f"{what} failed: HTTP {r.status_code} {r.text[:300]}")
        return r

    def ensure_collection(
        self, collection: pystac.Collection, collection_id: str | None = None
    ) -> bool:
        """Create the collection (as ``collection_id``, default its own id) when the API answers
        404 (True: created).

        Any other error (401, 5xx...) is raised rather than answered with a POST, and a 409 on
        the POST means a concurrent partition created it first.
        """
        collection_id = collection_id or collection.id
        r = self.client.get(f"{self.url}/collections/{collection_id}")
        if r.status_code == 200:
            return False
        if r.status_code != 404:
            raise StacSourceError(
                self.url,
                f"read collection {collection_id} failed: HTTP {r.status_code} {r.text[:300]}",
            )
        d = collection.to_dict(include_self_link=False, transform_hrefs=False)
        d["id"] = collection_id
        d["links"] = [
            lk for lk in d["links"] if lk["rel"] not in ("root", "parent", "child", "item", "self")
        ]
        r = self.client.post(f"{self.url}/collections", json=d)
        if r.status_code == 409:
            return False
        self._check(r, f"create collection {collection_id}")
        return True

    def partition_ids(self, collection_id: str, aoi: str, month: Month) -> list[str]:
        """Ids of the collection's items of one partition, through every page (pystac-client)."""
        from pystac_client import Client

        try:
            client = Client.open(self.url, headers=self.headers, timeout=self.timeout)
            search = client.search(
                collections=[collection_id],
                filter={
                    "op": "and",
                    "args": [
                        {"op": "=", "args": [{"property": AOI_PROP}, aoi]},
                        {"op": "=", "args": [{"property": MONTH_PROP}, month.key]},
                    ],
                },
                limit=self.page_size,
            )
            return [d["id"] for d in search.items_as_dicts()]
        except Exception as e:
            raise StacSourceError(self.url, f"search of {collection_id} failed: {e}") from None

    def update_extent(self, collection_id: str, items: Sequence[pystac.Item]) -> None:
        """Widen the published collection's extent to cover ``items`` (replacing the
        placeholder a new collection starts with). Read-modify-write: two partitions racing
        can lose one widening, which the next run of that partition restores."""
        if not items:
            return
        url = f"{self.url}/collections/{collection_id}"
        d = self._check(self.client.get(url), f"read collection {collection_id}").json()
        extent = _widened_extent(d.get("extent", {}), items)
        if extent == d.get("extent"):
            return
        d["extent"] = extent
        d["links"] = [lk for lk in d.get("links", []) if lk.get("rel") in ("license", "via")]
        self._check(self.client.put(url, json=d), f"update extent of {collection_id}")

    def replace_partition(
        self,
        collection: pystac.Collection,
        aoi: str,
        month: Month,
        items: Sequence[pystac.Item],
        *,
        kind: CatalogKind = "derived",
    ) -> PublishReport:
        """Make the API's items of this partition exactly ``items`` (``kind`` picks the id)."""
        cid = api_collection_id(collection.id, kind)
        report = PublishReport(cid, created_collection=self.ensure_collection(collection, cid))
        before = set(self.partition_ids(cid, aoi, month))
        url = f"{self.url}/collections/{cid}/items"
        for item in items:
            body = api_ready(item, cid)
            exists = self.client.get(f"{url}/{item.id}").status_code == 200
            if not exists:
                r = self.client.post(url, json=body)
                if r.status_code != 409:  # 409: inserted meanwhile by a concurrent run
                    self._check(r, f"insert {item.id}")
                    report.inserted.append(item.id)
                    continue
            self._check(self.client.put(f"{url}/{item.id}", json=body), f"update {item.id}")
            report.updated.append(item.id)
        for stale in sorted(before - {i.id for i in items}):
            r = self.client.delete(f"{url}/{stale}")
            if r.status_code != 404:  # already gone: deleted by a concurrent run
                self._check(r, f"delete {stale}")
            report.deleted.append(stale)
        self.update_extent(cid, items)
        return report
