"""The ``rgb_assets:`` properties our STAC items carry (one definition for every writer)."""

#: AOI name of the partition an item belongs to.
AOI_PROP = "rgb_assets:aoi"
#: Month (YYYY-MM) of the partition an item belongs to.
MONTH_PROP = "rgb_assets:month"
#: How an archived item was archived: ``clip`` or ``full``.
MODE_PROP = "rgb_assets:archive_mode"
#: The AOI bounding box a clip was cut to (an archive is reused only for the same box).
CLIP_PROP = "rgb_assets:clip_bbox"
#: Composite figures.
OBSERVATIONS_PROP = "rgb_assets:observations"
CLEAR_FRACTION_PROP = "rgb_assets:clear_fraction"
