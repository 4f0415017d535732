"""Where scenes come from: a STAC API (pystac-client) or a local static catalog.

Both answer the same search: items of one collection intersecting an AOI within a month, under a
maximum cloud cover. API searches use CQL2-JSON ``filter`` (the query extension is not
universal), page through every result, and retry 429/5xx and connection errors with backoff
through pystac-client's own ``StacApiIO`` retry support.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pystac
from shapely.geometry import shape

from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import CollectionSpec, Provider, provider_for_url
from rgb_assets.core.domain.errors import StacSourceError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.storage.store import stac_io


@dataclass(frozen=True)
class SearchRequest:
    collection_id: str
    aoi: Aoi
    month: Month
    max_cloud_cover: float | None = None
    platforms: tuple[str, ...] = ()
    updated_after: str | None = None


class StacSource(Protocol):
    url: str

    def search(self, request: SearchRequest) -> list[pystac.Item]: ...

    def collection_id(self, spec: CollectionSpec) -> str: ...


def _cloud_cover(item: pystac.Item) -> float | None:
    v = item.properties.get("eo:cloud_cover")
    return float(v) if isinstance(v, (int, float)) else None


class LocalStacSource:
    """A static catalog or collection on disk, searched in process."""

    def __init__(self, path: str | Path) -> None:
        self.url = str(path)
        p = Path(path).expanduser()
        if p.is_dir():
            p = next((p / n for n in ("catalog.json", "collection.json") if (p / n).exists()), p)
        if not p.is_file():
            raise StacSourceError(self.url, "no catalog.json or collection.json found there")
        try:
            self._root = pystac.read_file(str(p.resolve()), stac_io=stac_io())
        except Exception as e:
            raise StacSourceError(self.url, f"cannot be read as STAC: {e}") from None
        if not isinstance(self._root, pystac.Catalog):
            raise StacSourceError(self.url, "is not a STAC catalog or collection")
        #: The catalog's folder: its assets may be read (see ``core.archive.hrefs``).
        self.root_dir = str(p.resolve().parent)
        self._items: list[pystac.Item] | None = None

    def collection_id(self, spec: CollectionSpec) -> str:
        return spec.key

    def _all_items(self) -> list[pystac.Item]:
        if self._items is None:
            self._items = list(self._root.get_items(recursive=True))
            for it in self._items:
                it.make_asset_hrefs_absolute()
        return self._items

    def search(self, request: SearchRequest) -> list[pystac.Item]:
        aoi_shape = request.aoi.shape
        out = []
        for it in self._all_items():
            cid = it.collection_id or (
                self._root.id if isinstance(self._root, pystac.Collection) else None
            )
            if cid != request.collection_id:
                continue
            if it.datetime is None or not request.month.contains(it.datetime):
                continue
            if it.geometry is None or not shape(it.geometry).intersects(aoi_shape):
                continue
            cc = _cloud_cover(it)
            if (
                request.max_cloud_cover is not None
                and cc is not None
                and cc > request.max_cloud_cover
            ):
                continue
            if request.platforms and it.properties.get("platform") not in request.platforms:
                continue
            # A detached copy: ``full_copy`` would copy the whole catalog each item links to
            # (2-3 s per search of the 700-item sample), and ship it to the cluster with it.
            out.append(pystac.Item.from_dict(it.to_dict(transform_hrefs=False)))
        return sorted(out, key=lambda i: (i.datetime, i.id))


class _Deadline:
    """When the current call (open, or one search with all its pages) must have ended."""

    def __init__(self, total_s: float | None, attempt_s: float) -> None:
        self.total_s = total_s
        self.attempt_s = attempt_s
        self.at: float | None = None

    def start(self) -> None:
        self.at = None if self.total_s is None else time.monotonic() + self.total_s

    def remaining(self) -> float:
        return float("inf") if self.at is None else self.at - time.monotonic()


def _deadline_retry(deadline: _Deadline, **kwargs: Any) -> Any:
    """A urllib3 ``Retry`` that starts no attempt which could end after the deadline, and
    never sleeps past it (a ``Retry-After: 3600`` would otherwise stall a run for an hour)."""
    from urllib3 import Retry

    class DeadlineRetry(Retry):
        def is_exhausted(self) -> bool:
            return super().is_exhausted() or deadline.remaining() < deadline.attempt_s

        def get_backoff_time(self) -> float:
            return max(0.0, min(super().get_backoff_time(), deadline.remaining()))

        def get_retry_after(self, response: Any) -> float | None:
            after = super().get_retry_after(response)
            return None if after is None else max(0.0, min(after, deadline.remaining()))

    return DeadlineRetry(**kwargs)


class ApiStacSource:
    """A STAC API searched with pystac-client (paging, CQL2 filter, retries, timeout).

    ``timeout`` applies to each attempt (connect and each read). ``total_timeout`` bounds a
    whole call (opening the API, or one search with all its pages and retries): no retry starts
    that could end after it, so a hanging or failing server fails within it. Without it, a dead
    or stalled server fails after about ``timeout * (max_retries + 1)`` seconds plus backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_factor: float = 1.0,
        page_size: int = 100,
        headers: dict[str, str] | None = None,
        total_timeout: float | None = None,
    ) -> None:
        from pystac_client import Client
        from pystac_client.stac_api_io import StacApiIO

        self.url = url
        self.provider: Provider | None = provider_for_url(url)
        self.page_size = page_size
        if total_timeout is not None:
            timeout = min(timeout, total_timeout)
        self._deadline = _Deadline(total_timeout, timeout)
        retry = _deadline_retry(
            self._deadline,
            total=max_retries,
            backoff_factor=backoff_factor,
            status_forcelist=[429, 500, 502, 503, 504],
            allowed_methods=None,
            respect_retry_after_header=True,
        )
        io = StacApiIO(headers=headers, max_retries=retry)
        self._deadline.start()
        try:
            # The timeout goes to Client.open: it calls stac_io.update(timeout=...), which would
            # reset a timeout given to StacApiIO to None (requests then wait forever).
            self._client = Client.open(url, stac_io=io, timeout=timeout)
        except Exception as e:
            raise StacSourceError(url, f"cannot be opened as a STAC API: {e}") from None

    def collection_id(self, spec: CollectionSpec) -> str:
        if self.provider and spec.key in self.provider.collection_ids:
            return self.provider.collection_ids[spec.key]
        return spec.key

    def cql2_filter(self, request: SearchRequest) -> dict[str, Any] | None:
        args: list[dict[str, Any]] = []
        if request.max_cloud_cover is not None:
            args.append(
                {"op": "<=", "args": [{"property": "eo:cloud_cover"}, request.max_cloud_cover]}
            )
        if request.platforms:
            args.append({"op": "in", "args": [{"property": "platform"}, list(request.platforms)]})
        if request.updated_after:
            args.append(
                {"op": ">", "args": [{"property": "updated"}, {"timestamp": request.updated_after}]}
            )
        if not args:
            return None
        return args[0] if len(args) == 1 else {"op": "and", "args": args}

    def search(self, request: SearchRequest) -> list[pystac.Item]:
        self._deadline.start()
        try:
            search = self._client.search(
                collections=[request.collection_id],
                intersects=request.aoi.geometry,
                datetime=request.month.stac_interval(),
                filter=self.cql2_filter(request),
                limit=self.page_size,
            )
            items = list(search.items())
        except Exception as e:
            raise StacSourceError(self.url, f"search failed: {e}") from None
        return sorted(items, key=lambda i: (i.datetime, i.id))


def open_source(url: str, **kwargs: Any) -> StacSource:
    """A STAC API for http(s) URLs, a local static catalog for paths and file:// URLs."""
    if not url or not isinstance(url, str):
        raise StacSourceError(str(url), "no STAC source configured")
    if url.startswith(("http://", "https://")):
        return ApiStacSource(url, **kwargs)
    return LocalStacSource(url.removeprefix("file://"))


def sign_hrefs(items: Sequence[pystac.Item], source_url: str) -> list[pystac.Item]:
    """Copies of items with hrefs signed for reading (Planetary Computer); never stored."""
    provider = provider_for_url(source_url)
    if not provider or not provider.sign_hrefs:
        return list(items)
    import planetary_computer

    signed = []
    for it in items:
        # Asset by asset on a clone: signing a whole item makes the package resolve its
        # collection link (one more request per item), and the original must stay unsigned.
        copy = it.clone()
        for asset in copy.assets.values():
            asset.href = planetary_computer.sign(asset.href)
        signed.append(copy)
    return signed
