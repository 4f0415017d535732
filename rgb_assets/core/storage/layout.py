"""Where everything lives in the store: one place for every path the pipeline writes."""

from __future__ import annotations

from rgb_assets.core.domain.months import Month

AOIS = "aois"
RAW_CATALOG = "catalogs/raw"
DERIVED_CATALOG = "catalogs/derived"


def raw_partition(collection: str, aoi: str, month: Month) -> str:
    """Archived scenes of one AOI × month: ``{source_id}/`` folders plus ``items.json``."""
    return f"raw/{collection}/{aoi}/{month.key}"


def raw_item_dir(collection: str, aoi: str, month: Month, source_id: str) -> str:
    return f"{raw_partition(collection, aoi, month)}/{source_id}"


def raw_manifest(collection: str, aoi: str, month: Month) -> str:
    """The partition's ItemCollection of archived items (the raw_scenes asset value)."""
    return f"{raw_partition(collection, aoi, month)}/items.json"


def composite_dir(collection: str, aoi: str, month: Month) -> str:
    return f"composites/{collection}/{aoi}/{month.key}"


def composite_basename(collection: str, aoi: str, month: Month) -> str:
    return f"{aoi}_{month.key}_{collection}"
