"""Archive one AOI × month: search the source, resolve each item, ingest what the composite needs.

This is the pure-Python body of the ``raw_scenes`` asset: it returns a report the Dagster layer
turns into metadata, and the archived items that become the partition's manifest.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pystac

from rgb_assets.core.archive.hrefs import RefusedAsset
from rgb_assets.core.archive.ingest import ArchiveMode, ingest_item
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import CollectionSpec, MissingAssetError, resolve_item
from rgb_assets.core.domain.errors import MissingInputsError, RefusedInputsError
from rgb_assets.core.domain.limits import Limits, PartitionEstimate, estimate_partition
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.source import LocalStacSource, SearchRequest, StacSource, sign_hrefs
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store


@dataclass
class RawScenes:
    """The archived scenes of one partition (the value of the ``raw_scenes`` asset)."""

    collection: str
    aoi: str
    month: Month
    source_url: str
    items: list[pystac.Item] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    # Source item id -> asset key -> how the source was verified against the item's declared
    # file:checksum / file:size: "checksum" (whole copies, mode "full"), "size" (clipped reads
    # check the declared size; a clip is new bytes, so no checksum), or "unverifiable" (nothing
    # declared). Items archived this run are listed; intact ones from an earlier run are not.
    source_verification: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.items


#: In-flight ingest tasks per partition, by kind of source: local files are bounded by the
#: cores that decode them, HTTP APIs by politeness, object stores by connection reuse.
DEFAULT_CONCURRENCY = {"file": 4, "http": 8, "s3": 16}


def default_concurrency(href: str) -> int:
    """How many of a partition's items may be read from this source at once."""
    scheme = href.split("://", 1)[0] if "://" in href else "file"
    if scheme in ("http", "https"):
        return DEFAULT_CONCURRENCY["http"]
    return DEFAULT_CONCURRENCY.get(scheme, DEFAULT_CONCURRENCY["s3"])


def _ingest_task(
    item: pystac.Item,
    spec: CollectionSpec,
    aoi: Aoi,
    month: Month,
    store: Store,
    mode: ArchiveMode,
    source_url: str,
    roots: tuple[str, ...],
) -> tuple[str, Any]:
    """Archive one source item (on a cluster worker or a pool thread): ``("ingested",
    outcome)``, ``("missing", (reason, problem))`` or ``("refused", reason)``. Signed right
    before reading: SAS tokens expire within the hour and a month of scenes can take longer;
    skipped items need no token. The signed copy is only read."""
    try:
        resolved = resolve_item(item, spec)
    except MissingAssetError as e:
        return "missing", (str(e), e.problem)
    (readable,) = sign_hrefs([item], source_url)
    try:
        outcome = ingest_item(
            resolved, aoi, month, store, spec.key, mode=mode, read_item=readable, read_roots=roots
        )
    except RefusedAsset as e:
        return "refused", str(e)
    return "ingested", outcome


def _map_bounded(
    executor: Executor, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], limit: int
) -> list[Any]:
    """``fn(*call)`` for every call, at most ``limit`` in flight, results in call order.

    The first exception is raised once the calls already running have ended (no task of this
    partition is left writing to the store behind the caller's back).
    """
    results: list[Any] = [None] * len(calls)
    pending: dict[Future[Any], int] = {}
    queue = iter(enumerate(calls))
    error: BaseException | None = None
    while True:
        while error is None and len(pending) < limit:
            nxt = next(queue, None)
            if nxt is None:
                break
            pending[executor.submit(fn, *nxt[1])] = nxt[0]
        if not pending:
            break
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            index = pending.pop(future)
            try:
                results[index] = future.result()
            except BaseException as e:  # noqa: BLE001  (re-raised below)
                error = error or e
    if error is not None:
        raise error
    return results


def archive_partition(
    source: StacSource,
    spec: CollectionSpec,
    aoi: Aoi,
    month: Month,
    store: Store,
    *,
    max_cloud_cover: float | None = None,
    mode: ArchiveMode = "clip",
    platforms: tuple[str, ...] | None = None,
    read_roots: tuple[str, ...] = (),
    limits: Limits | None = None,
    grid: dict[str, Any] | None = None,
    executor: Executor | None = None,
    max_concurrency: int | None = None,
) -> RawScenes:
    """Search, check the partition's cost, then archive each item, in parallel and bounded.

    Items are archived as tasks of ``executor`` (the cluster's, in a run: see
    ``rgb_assets.dask_compute.archive_executor``), else of a thread pool; at most
    ``max_concurrency`` (default: :func:`default_concurrency` of the source) run at once, with
    the checksum and verification rules of :func:`ingest_item` per item.

    Local hrefs are read only under ``read_roots`` and, for a local static catalog, its own
    folder; items whose assets are refused are skipped with the reason and never archived.
    With ``limits``, the pre-flight estimate (:func:`estimate_partition`, with the composite's
    ``grid`` run config: ``crs``, ``resolution``, ``chunk``) runs after the search and before
    anything is archived, raising :class:`InputError` over a limit; it is kept in ``stats``.
    """
    t0 = time.perf_counter()
    roots = tuple(read_roots)
    if isinstance(source, LocalStacSource):
        roots += (source.root_dir,)
    request = SearchRequest(
        collection_id=source.collection_id(spec),
        aoi=aoi,
        month=month,
        max_cloud_cover=max_cloud_cover,
        platforms=spec.platforms if platforms is None else platforms,
    )
    found = source.search(request)
    t_search = time.perf_counter() - t0
    estimate: PartitionEstimate | None = None
    if limits is not None:
        grid = grid or {}
        estimate = estimate_partition(
            aoi.geometry,
            spec.key,
            spec.resolution,
            len(found),
            limits,
            crs=grid.get("crs"),
            resolution=grid.get("resolution"),
            archive_mode=mode,
            chunk=int(grid.get("chunk") or 2048),
        )
    result = RawScenes(spec.key, aoi.name, month, source.url)
    paths = PartitionPaths(spec.key, aoi.name, month)
    counts = {"archived": 0, "intact": 0, "outside": 0, "refused": 0}
    written = 0
    missing: list[tuple[str, str]] = []
    limit = max(1, max_concurrency or default_concurrency(source.url))
    calls = [(item, spec, aoi, month, store, mode, source.url, roots) for item in found]
    t_archive = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if executor is None:
            executor = stack.enter_context(ThreadPoolExecutor(min(limit, max(1, len(calls)))))
        outcomes = _map_bounded(executor, _ingest_task, calls, limit) if calls else []
    for item, (kind, payload) in zip(found, outcomes, strict=True):
        if kind == "missing":
            result.skipped.append({"item": item.id, "reason": payload[0]})
            missing.append((item.id, payload[1]))
            continue
        if kind == "refused":
            result.skipped.append({"item": item.id, "reason": f"refused: {payload}"})
            counts["refused"] += 1
            continue
        outcome = payload
        counts[outcome.status] += 1
        written += outcome.bytes_written
        if outcome.status == "archived":
            result.source_verification[item.id] = dict(outcome.source_verification)
        if outcome.item is not None:
            folder = paths.scene_dir(item.id)
            for asset in outcome.item.assets.values():
                asset.href = (
                    store.uri(f"{folder}/{asset.href.removeprefix('./')}")
                    if asset.href.startswith("./")
                    else asset.href
                )
            result.items.append(outcome.item)
        else:
            result.skipped.append({"item": item.id, "reason": "no pixels inside the AOI"})
    where = f"{spec.key} {aoi.name} {month.key}"
    if found and len(missing) == len(found):
        raise MissingInputsError(where, missing)
    if found and counts["refused"] and len(missing) + counts["refused"] == len(found):
        raise RefusedInputsError(where, [(s["item"], s["reason"]) for s in result.skipped])
    result.stats = {
        "found": len(found),
        **counts,
        "skipped": len(result.skipped),
        "bytes_written": written,
        "source_verified": {
            level: sum(
                v == level for per in result.source_verification.values() for v in per.values()
            )
            for level in ("checksum", "size", "unverifiable")
        },
        "estimate": estimate.as_dict() if estimate is not None else None,
        "concurrency": limit,
        "search_s": round(t_search, 3),
        "archive_s": round(time.perf_counter() - t_archive, 3),
        "total_s": round(time.perf_counter() - t0, 3),
    }
    return result


def write_manifest(raw: RawScenes, store: Store) -> str:
    """Persist the partition's archived items as an ItemCollection (replaces the previous one)."""
    key = PartitionPaths(raw.collection, raw.aoi, raw.month).manifest
    ic = pystac.ItemCollection(
        raw.items,
        extra_fields={
            "rgb_assets:collection": raw.collection,
            "rgb_assets:aoi": raw.aoi,
            "rgb_assets:month": raw.month.key,
            "rgb_assets:source": raw.source_url,
            "rgb_assets:skipped": raw.skipped,
            "rgb_assets:stats": raw.stats,
            "rgb_assets:source_verification": raw.source_verification,
        },
    )
    store.write_text(key, json.dumps(ic.to_dict(transform_hrefs=False), indent=1))
    return key


def read_manifest(store: Store, collection: str, aoi: str, month: Month) -> RawScenes:
    key = PartitionPaths(collection, aoi, month).manifest
    d = json.loads(store.read_text(key))
    ic = pystac.ItemCollection.from_dict(d, preserve_dict=False)
    extra = ic.extra_fields
    return RawScenes(
        collection=collection,
        aoi=aoi,
        month=month,
        source_url=extra.get("rgb_assets:source", ""),
        items=list(ic.items),
        skipped=extra.get("rgb_assets:skipped", []),
        stats=extra.get("rgb_assets:stats", {}),
        source_verification=extra.get("rgb_assets:source_verification", {}),
    )
