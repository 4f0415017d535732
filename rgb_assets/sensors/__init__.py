"""Sensors: new scenes in the STAC source, AOI files in an inbox, and declarative automation.

All are STOPPED by default: turn them on in the UI (Automation) or with
``dagster sensor start``. ``automation_sensor`` evaluates the automation condition of
raw_catalog, monthly_composite and derived_catalog (``assets.automation``), so when an upstream
partition of any month is materialized alone (for example raw_scenes from the UI) its
downstream partitions follow.
"""

from dagster import AssetSelection, AutomationConditionSensorDefinition

from rgb_assets.sensors.aoi_files import aoi_files_sensor
from rgb_assets.sensors.new_scenes import new_scenes_sensor

automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target=AssetSelection.all(),
    minimum_interval_seconds=30,
    description="Materializes downstream partitions whose upstream changed (eager conditions).",
)

ALL_SENSORS = [new_scenes_sensor, aoi_files_sensor, automation_sensor]

__all__ = ["ALL_SENSORS", "aoi_files_sensor", "automation_sensor", "new_scenes_sensor"]
