"""Publish catalog items to a STAC API with the Transactions extension, idempotently.

Collections are created when missing; items are upserted (PUT when the id exists, POST
otherwise), so re-running a partition never duplicates. Items of the partition that are no
longer produced are deleted (found with a CQL2 filter on the partition properties). Asset and
link hrefs are made absolute first: relative hrefs mean nothing once served by an API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pystac

from rgb_assets.core.errors import StacSourceError
from rgb_assets.core.months import Month

AOI_PROP = "rgb_assets:aoi"
MONTH_PROP = "rgb_assets:month"


@dataclass
class PublishReport:
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
    return d


class StacPublisher:
    """Upserts items of one partition into a Transactions-enabled STAC API."""

    def __init__(self, url: str, *, timeout: float = 30.0, headers: dict[str, str] | None = None):
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout, headers=headers or {})

    def _check(self, r: httpx.Response, what: str) -> httpx.Response:
        if r.status_code >= 400:
            raise StacSourceError(self.url, f"{what} failed: HTTP {r.status_code} {r.text[:300]}")
        return r

    def ensure_collection(self, collection: pystac.Collection) -> bool:
        r = self.client.get(f"{self.url}/collections/{collection.id}")
        if r.status_code == 200:
            return False
        d = collection.to_dict(include_self_link=False, transform_hrefs=False)
        d["links"] = [
            lk for lk in d["links"] if lk["rel"] not in ("root", "parent", "child", "item", "self")
        ]
        self._check(self.client.post(f"{self.url}/collections", json=d), "create collection")
        return True

    def partition_ids(self, collection_id: str, aoi: str, month: Month) -> list[str]:
        body = {
            "collections": [collection_id],
            "filter-lang": "cql2-json",
            "filter": {
                "op": "and",
                "args": [
                    {"op": "=", "args": [{"property": AOI_PROP}, aoi]},
                    {"op": "=", "args": [{"property": MONTH_PROP}, month.key]},
                ],
            },
            "limit": 1000,
        }
        r = self._check(self.client.post(f"{self.url}/search", json=body), "search")
        return [f["id"] for f in r.json().get("features", [])]

    def replace_partition(
        self, collection: pystac.Collection, aoi: str, month: Month, items: Sequence[pystac.Item]
    ) -> PublishReport:
        report = PublishReport(created_collection=self.ensure_collection(collection))
        cid = collection.id
        before = set(self.partition_ids(cid, aoi, month))
        for item in items:
            body = api_ready(item, cid)
            url = f"{self.url}/collections/{cid}/items"
            exists = self.client.get(f"{url}/{item.id}").status_code == 200
            if exists:
                self._check(self.client.put(f"{url}/{item.id}", json=body), f"update {item.id}")
                report.updated.append(item.id)
            else:
                self._check(self.client.post(url, json=body), f"insert {item.id}")
                report.inserted.append(item.id)
        for stale in sorted(before - {i.id for i in items}):
            self._check(
                self.client.delete(f"{self.url}/collections/{cid}/items/{stale}"), f"delete {stale}"
            )
            report.deleted.append(stale)
        return report
