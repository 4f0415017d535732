"""Jobs: the whole pipeline for one AOI × month partition."""

from dagster import AssetSelection, define_asset_job

monthly_composite_job = define_asset_job(
    "monthly_composite_job",
    selection=AssetSelection.groups("raw", "derived"),
    description="raw_scenes → raw_catalog → monthly_composite → derived_catalog for one partition",
)
