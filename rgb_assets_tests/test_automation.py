"""Downstream assets follow an upstream materialization of any month (declarative automation)."""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetMaterialization,
    AutomationCondition,
    DagsterInstance,
    evaluate_automation_conditions,
)

from rgb_assets.definitions import defs
from rgb_assets.partitions import aoi_partitions

AOI = "automation-aoi"
PAST = f"{AOI}|2019-07-01"  # far from the latest time window


def _requested(result: object, key: str) -> set[str]:
    return set(result.get_requested_partitions(AssetKey(key)))  # type: ignore[attr-defined]


def test_archiving_a_past_month_refreshes_its_downstream_partitions() -> None:
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(aoi_partitions.name, [AOI])
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # nothing upstream yet

        instance.report_runless_asset_event(
            AssetMaterialization(asset_key="raw_scenes", partition=PAST)
        )
        second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        for key in ("raw_catalog", "monthly_composite", "derived_catalog", "aoi_timeseries"):
            assert _requested(second, key) == {PAST}, key
        # raw_catalog, monthly_composite, derived_catalog and the AOI's time cube
        assert second.total_requested == 4

        third = evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
        assert third.total_requested == 0  # requested once, not on every tick


def test_plain_eager_would_ignore_a_past_month() -> None:
    """Why the condition drops ``in_latest_time_window``: eager() alone misses past months."""
    from dagster import Definitions, asset

    from rgb_assets.partitions import partitions_def

    @asset(partitions_def=partitions_def)
    def upstream() -> None: ...

    @asset(partitions_def=partitions_def, automation_condition=AutomationCondition.eager())
    def downstream(upstream: None) -> None: ...

    plain = Definitions(assets=[upstream, downstream])
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(aoi_partitions.name, [AOI])
        first = evaluate_automation_conditions(defs=plain, instance=instance)
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key="upstream", partition=PAST)
        )
        second = evaluate_automation_conditions(defs=plain, instance=instance, cursor=first.cursor)
        assert second.total_requested == 0
