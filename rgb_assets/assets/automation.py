"""When downstream assets follow their upstream: the automation condition they share."""

from dagster import AutomationCondition

# ``eager()`` only looks at the latest time window (the last month partition); AOI x month
# partitions are re-archived for any past month, so the downstream chain must follow there too.
FOLLOW_UPSTREAM = AutomationCondition.eager().without(AutomationCondition.in_latest_time_window())
