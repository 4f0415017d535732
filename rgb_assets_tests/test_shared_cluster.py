"""Many runs on one shared Dask cluster: a real ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, started in another folder with no ``RGB_ASSETS_*`` variable.

Runs are launched as separate processes at once (``run_partition``: ``execute_job`` on the
code location's executor, pointed at the cluster by ``RGB_ASSETS_DASK_SCHEDULER``), as a run
queue would launch a backfill.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from dagster import DagsterEventType, DagsterInstance

from rgb_assets.core.domain.months import Month
from rgb_assets.core.raster.timecube import cube_key, open_cube
from rgb_assets.partitions import aoi_partitions
from rgb_assets_tests.published import assert_consistent as _consistent
from rgb_assets_tests.published import derived_items as _derived_items
from rgb_assets_tests.published import register as _register
from rgb_assets_tests.servers.dask_cluster import DaskCluster

REPO = Path(__file__).resolve().parents[1]
STEPS = ("raw_scenes", "raw_catalog", "monthly_composite", "derived_catalog", "aoi_timeseries")
#: Eight partitions take about a minute on 2 idle cores; a wedged cluster must not eat CI's hour.
RUN_TIMEOUT_S = 480
MONTHS = ["2017-07", "2018-05", "2018-07", "2018-08", "2019-06", "2019-07", "2019-08", "2019-09"]


def _launch(cluster: DaskCluster, partitions: list[tuple[str, str]]) -> list[dict]:
    """Start one run process per partition at once; wait for all; their reports."""
    env = dict(os.environ, RGB_ASSETS_DASK_SCHEDULER=cluster.address)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rgb_assets_tests.run_partition", aoi, month],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for aoi, month in partitions
    ]
    reports = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
            assert proc.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            proc.kill()
    return reports


def _step_events(run_id: str) -> dict[str, set[str]]:
    """Event types per step key of a run."""
    out: dict[str, set[str]] = {}
    with DagsterInstance.get() as instance:
        for record in instance.get_records_for_run(run_id).records:
            ev = record.event_log_entry.dagster_event
            if ev and ev.step_key:
                out.setdefault(ev.step_key, set()).add(ev.event_type_value)
    return out


def _materialization_metadata(run_id: str, step: str) -> dict:
    with DagsterInstance.get() as instance:
        for record in instance.get_records_for_run(run_id).records:
            ev = record.event_log_entry.dagster_event
            if ev and ev.step_key == step and ev.is_step_materialization:
                md = ev.step_materialization_data.materialization.metadata
                return {k: getattr(v, "value", v) for k, v in md.items()}
    raise AssertionError(f"no materialization of {step} in run {run_id}")


def test_workers_have_a_foreign_environment(cluster: DaskCluster) -> None:
    from distributed import Client

    def environment() -> dict:
        return {
            "cwd": os.getcwd(),
            "rgb_vars": sorted(k for k in os.environ if k.startswith("RGB_ASSETS")),
            "dagster_home": os.environ.get("DAGSTER_HOME"),
            "preloaded": "rgb_assets.definitions" in sys.modules,
        }

    with Client(cluster.address) as client:
        seen = client.run(environment)
    assert len(seen) == 2
    for env in seen.values():
        assert env["cwd"] == str(cluster.worker_dir)
        assert env["rgb_vars"] == [] and env["dagster_home"] is None
        assert env["preloaded"], "the worker preload imports the code location"


def test_eight_concurrent_runs_all_write_their_outputs(cluster: DaskCluster, storage) -> None:
    aoi = "shared-eight"
    _register(storage, aoi)
    reports = _launch(cluster, [(aoi, m) for m in MONTHS])
    assert [r["success"] for r in reports] == [True] * 8
    for report, month in zip(reports, MONTHS, strict=True):
        events = _step_events(report["run_id"])
        for step in STEPS:
            assert {"STEP_START", "STEP_SUCCESS"} <= events.get(step, set()), (month, step)
        # The steps ran on the shared cluster's workers, which found the run's store and
        # source although their environment names neither.
        md = _materialization_metadata(report["run_id"], "raw_scenes")
        assert md["dask_dashboard"] == cluster.dashboard
        _consistent(storage, aoi, Month.parse(month))
    items = _derived_items(storage, aoi)
    assert sorted(i.properties["rgb_assets:month"] for i in items) == MONTHS
    # The eight months met in the AOI's one time cube (a lock the steps wait for on the
    # workers, whose holder still gets the cluster's threads).
    cube = open_cube(storage.store(), cube_key("sentinel-2-l2a", aoi))
    assert cube is not None
    assert list(pd.DatetimeIndex(cube["time"].values).strftime("%Y-%m")) == MONTHS
    assert not (cluster.worker_dir / "data").exists(), "a worker wrote to its own default store"


def test_two_runs_of_one_partition_end_consistent(cluster: DaskCluster, storage) -> None:
    aoi, month = "shared-twice", "2019-07"
    _register(storage, aoi)
    reports = _launch(cluster, [(aoi, month), (aoi, month)])
    assert [r["success"] for r in reports] == [True, True]
    assert reports[0]["run_id"] != reports[1]["run_id"]
    for report in reports:
        assert "STEP_SUCCESS" in _step_events(report["run_id"])["monthly_composite"]
    _consistent(storage, aoi, Month.parse(month))
    items = _derived_items(storage, aoi)
    assert [i.properties["rgb_assets:month"] for i in items] == [month]
    # The derived item's provenance links resolve to raw items that exist.
    for link in items[0].get_links("derived_from"):
        assert Path(link.get_absolute_href()).exists()


def test_a_failed_upstream_step_skips_downstream_and_fails_the_run(
    cluster: DaskCluster, storage
) -> None:
    # A partition whose AOI geometry was never stored: raw_scenes raises.
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(aoi_partitions.name, ["shared-ghost"])
    (report,) = _launch(cluster, [("shared-ghost", "2019-07")])
    assert report["success"] is False
    events = _step_events(report["run_id"])
    assert DagsterEventType.STEP_FAILURE.value in events["raw_scenes"]
    # As with Dagster's own executors, the downstream steps never start (only the run's plan
    # mentions them) and the run log says why.
    for step in STEPS[1:]:
        assert all(e.endswith("_PLANNED") for e in events[step]), (step, events[step])
    with DagsterInstance.get() as instance:
        messages = [
            r.event_log_entry.user_message
            for r in instance.get_records_for_run(report["run_id"]).records
        ]
    for step in STEPS[1:]:
        assert any(m.startswith(f"Dependencies for step {step}") for m in messages), step
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(report["run_id"])
    assert run is not None and run.is_failure
