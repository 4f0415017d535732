"""What STAC viewers need from the derived catalog: renders, web-map links, a time series.

- ``renders`` (render extension v2.0.0): how to draw the analysis COG the way the visual COG
  is drawn (bands 1-3, reflectance 0..VISUAL_MAX stretched linearly).
- ``xyz`` links (web-map-links extension v1.2.0) to the request service's tiles, only when a
  public base URL is configured.
- the derived collection's thumbnail (the newest month's) and a time-series summary: an asset
  ``timeseries.json`` with one row per AOI x month (clear fraction, scene count, item) and
  ``summaries`` over it.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from typing import Any

import pystac

from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.web import tile_url
from rgb_assets.core.raster.writers import VISUAL_MAX
from rgb_assets.core.stac.properties import AOI_PROP, MONTH_PROP
from rgb_assets.core.stac.properties import CLEAR_FRACTION_PROP as CLEAR_PROP
from rgb_assets.core.storage.store import Store

RENDER_EXT = "https://stac-extensions.github.io/render/v2.0.0/schema.json"
WEB_MAP_LINKS_EXT = "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json"
RENDER_NAME = "visual"
TIMESERIES = "timeseries.json"
SCENES_PROP = "rgb_assets:scene_count"


def _declare(obj: pystac.Item | pystac.Collection, uri: str) -> None:
    if uri not in obj.stac_extensions:
        obj.stac_extensions.append(uri)


def add_renders(item: pystac.Item, bands: Sequence[str]) -> None:
    """The true-colour render of the ``data`` asset, equal to the visual COG's stretch."""
    item.properties["renders"] = {
        RENDER_NAME: {
            "title": f"True colour ({', '.join(bands)}), reflectance 0-{VISUAL_MAX}",
            "assets": ["data"],
            "bidx": [1, 2, 3],
            "rescale": [[0, VISUAL_MAX]] * 3,
            "nodata": "nan",
            "resampling": "nearest",
        }
    }
    _declare(item, RENDER_EXT)


def add_web_map_links(item: pystac.Item, base_url: str, aoi: str, month: Month) -> None:
    """An ``xyz`` link to the service's tiles of the visual COG, drawn as ``renders.visual``."""
    link = pystac.Link(
        "xyz",
        tile_url(base_url, aoi, month),
        media_type=pystac.MediaType.PNG,
        title="Visual composite (XYZ tiles from rgb-assets serve)",
        extra_fields={"render": RENDER_NAME},
    )
    item.add_link(link)
    _declare(item, WEB_MAP_LINKS_EXT)


def summarize_collection(
    collection: dict[str, Any],
    store: Store,
    collection_key: str,
    aoi: str,
    month: Month,
    items: Sequence[pystac.Item],
) -> None:
    """Replace this partition's rows in the collection's ``timeseries.json`` asset, then set
    the collection's (JSON) summaries and thumbnail from the rows (under the catalog lock)."""
    folder = posixpath.dirname(collection_key)
    ts_key = f"{folder}/{TIMESERIES}"
    rows: list[dict[str, Any]] = []
    if store.exists(ts_key):
        rows = json.loads(store.read_text(ts_key))["rows"]
    rows = [r for r in rows if (r["aoi"], r["month"]) != (aoi, month.key)]
    for item in items:
        thumb = item.assets.get("thumbnail")
        thumb_href = None
        absolute = thumb.get_absolute_href() if thumb is not None else None
        root = store.uri("x")[:-1]
        if absolute and absolute.startswith(root):
            # The thumbnail's store key, relative to the collection's folder.
            thumb_href = posixpath.relpath(absolute[len(root) :], folder)
        rows.append(
            {
                "aoi": aoi,
                "month": month.key,
                "item": f"./{aoi}/{month.key}/{item.id}/{item.id}.json",
                "clear_fraction": item.properties.get(CLEAR_PROP),
                "scene_count": item.properties.get(SCENES_PROP),
                "thumbnail": thumb_href,
            }
        )
    rows.sort(key=lambda r: (r["aoi"], r["month"]))
    store.write_text(ts_key, json.dumps({"rows": rows}, indent=1))
    assets = collection.setdefault("assets", {})
    assets["timeseries"] = {
        "href": f"./{TIMESERIES}",
        "title": "Monthly time series: clear fraction and scene count per AOI x month",
        "type": pystac.MediaType.JSON.value,
        "roles": ["metadata"],
    }
    assets.pop("thumbnail", None)
    newest = max((r for r in rows if r["thumbnail"]), key=lambda r: r["month"], default=None)
    if newest:
        assets["thumbnail"] = {
            "href": f"./{newest['thumbnail']}",
            "title": f"{newest['aoi']} {newest['month']}",
            "type": pystac.MediaType.PNG.value,
            "roles": ["thumbnail"],
        }
    fractions = [r["clear_fraction"] for r in rows if r["clear_fraction"] is not None]
    summaries: dict[str, Any] = {
        MONTH_PROP: sorted({r["month"] for r in rows}),
        AOI_PROP: sorted({r["aoi"] for r in rows}),
    }
    if fractions:
        summaries[CLEAR_PROP] = {"minimum": min(fractions), "maximum": max(fractions)}
    collection["summaries"] = summaries
