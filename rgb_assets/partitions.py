"""AOI (dynamic) × month partitions shared by every asset."""

from __future__ import annotations

from dagster import (
    DynamicPartitionsDefinition,
    MonthlyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
)

from rgb_assets.config import get_settings
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.months import Month

# Landsat 8 data start in April 2013; Sentinel-2 in mid 2015.
FIRST_MONTH = get_settings().first_month

aoi_partitions = DynamicPartitionsDefinition(name="aoi")
month_partitions = MonthlyPartitionsDefinition(start_date=Month.parse(FIRST_MONTH).partition_key)
partitions_def = MultiPartitionsDefinition({"aoi": aoi_partitions, "month": month_partitions})


def partition_key(aoi: str, month: Month) -> MultiPartitionKey:
    return MultiPartitionKey({"aoi": aoi, "month": month.partition_key})


def split_key(key: object) -> tuple[str, Month]:
    """(aoi, month) of a partition key, whether Dagster gives a MultiPartitionKey or a string."""
    if not isinstance(key, MultiPartitionKey):
        key = partitions_def.get_partition_key_from_str(str(key))
    dims = key.keys_by_dimension
    return dims["aoi"], Month.parse(dims["month"])


def check_month_in_range(month: Month, field: str = "month") -> Month:
    """Refuse months the partitions do not cover (before the first, or not yet complete)."""
    keys = month_partitions.get_partition_keys()
    if not keys:
        raise InputError(field, f"{month.key}: no month is complete yet since {FIRST_MONTH}")
    if month.partition_key not in keys:
        first, last = keys[0][:7], keys[-1][:7]
        raise InputError(field, f"{month.key} is outside the partition range {first}..{last}")
    return month
