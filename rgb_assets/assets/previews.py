"""Pictures in the Dagster UI: Markdown metadata showing a composite's thumbnail.

The asset and run pages render Markdown metadata: a short entry inline, a longer one behind
"[Show Markdown]". With a public URL (``RGB_ASSETS_PUBLIC_URL``) set, the image is the
thumbnail served by ``rgb-assets serve`` (a short entry, drawn inline); without it, the PNG
is embedded as a ``data:`` URI (self-contained, one click away). The entry links to the map
viewer of the partition. A month with no data, or a composite blocked by its checks, gets a
banner saying so instead of looking like any other month (and the product kept from before,
if any, labelled).
"""

from __future__ import annotations

import base64

from dagster import MetadataValue

from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.web import service_url, store_url, viewer_url
from rgb_assets.core.stac.catalog import CompositeFiles
from rgb_assets.core.storage.store import Store

PREVIEW_KEY = "preview"
BANNERS = {
    "no data": "**No data**: no clear observation this month, so no new composite.",
    "blocked": "**Blocked**: a blocking quality check failed, so this composite was not published.",
}


def _image(store: Store, thumbnail_key: str, caption: str, base: str | None) -> str:
    if base:
        return f"![{caption}]({store_url(base, thumbnail_key)})"
    try:
        png = store.read_bytes(thumbnail_key)
    except FileNotFoundError:
        # Another run of the partition published after this one and its catalog step removed
        # this version: the run still succeeded, its preview just has no picture to show.
        return f"_{caption}: this version was since replaced by a later run's._"
    return f"![{caption}](data:image/png;base64,{base64.b64encode(png).decode()})"


def preview_metadata(
    store: Store,
    aoi: str,
    month: Month,
    *,
    outcome: str,
    files: CompositeFiles | None,
    clear_fraction: float | None = None,
    scene_count: int | None = None,
    public_url: str | None = None,
) -> dict[str, MetadataValue]:
    """``preview`` (Markdown: thumbnail, or a banner when nothing new was published) and
    ``viewer`` (the map viewer on this AOI and month) for a ``monthly_composite`` run."""
    viewer = viewer_url(service_url(public_url), aoi, month)
    facts = []
    if clear_fraction is not None:
        facts.append(f"clear {clear_fraction:.0%}")
    if scene_count is not None:
        facts.append(f"{scene_count} scene{'s' if scene_count != 1 else ''}")
    caption = f"{aoi} {month.key}" + (f" ({', '.join(facts)})" if facts else "")
    lines = []
    if outcome in BANNERS:
        lines.append(f"> {BANNERS[outcome]} {caption}.")
    if files is not None:
        if outcome in BANNERS:
            lines.append(f"The composite published before is kept (version {files.version}):")
        lines.append(_image(store, files.thumbnail, caption, public_url))
        lines.append(f"[Open {aoi} {month.key} in the map viewer]({viewer})")
    meta: dict[str, MetadataValue] = {PREVIEW_KEY: MetadataValue.md("\n\n".join(lines))}
    if files is not None:
        meta["viewer"] = MetadataValue.url(viewer)
    return meta
