"""Run one AOI × month partition of ``monthly_composite_job`` in this process, as Dagster's run
worker would: ``execute_job`` on the code location's executor and the persistent instance.

    python -m rgb_assets_tests.run_partition AOI YYYY-MM   # prints {"run_id", "success"}
"""

from __future__ import annotations

import json
import sys

from dagster import DagsterInstance, execute_job, reconstructable

from rgb_assets.core.domain.months import Month
from rgb_assets.definitions import monthly_composite_job_def
from rgb_assets.partitions import partition_key


def run_partition(aoi: str, month: str, run_config: dict | None = None) -> dict:
    key = partition_key(aoi, Month.parse(month))
    with (
        DagsterInstance.get() as instance,
        execute_job(
            reconstructable(monthly_composite_job_def),
            instance=instance,
            tags={"dagster/partition": str(key)},
            run_config=run_config or {},
        ) as result,
    ):
        return {"run_id": result.run_id, "success": result.success}


if __name__ == "__main__":
    print(json.dumps(run_partition(sys.argv[1], sys.argv[2])))
