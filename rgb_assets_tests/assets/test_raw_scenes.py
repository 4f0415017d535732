"""Run config is validated when the run starts, before anything is archived (issue 13 #3, #6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from rgb_assets.assets.raw_scenes import composite_run_config, raw_scenes
from rgb_assets.config import Settings
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.months import Month
from rgb_assets.definitions import pipeline_resources
from rgb_assets.partitions import aoi_partitions, partition_key

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"crs": "EPSG:999999"}, "crs"),
        ({"crs": "not a crs"}, "crs"),
        ({"resolution": 0}, "resolution"),
        ({"resolution": -10}, "resolution"),
        ({"chunk": 0}, "chunk"),
        ({"min_clear_fraction": 2}, "min_clear_fraction"),
        ({"resampling": "lanczos"}, "resampling"),
        ({"dilation": -1}, "dilation"),
    ],
)
def test_bad_composite_config_is_refused_by_the_first_step(config: dict, field: str) -> None:
    run_config = {"ops": {"monthly_composite": {"config": config}}}
    with pytest.raises(InputError) as e:
        composite_run_config(run_config)
    assert e.value.field == f"ops.monthly_composite.config.{field}"


def test_good_composite_config_passes() -> None:
    grid = composite_run_config(
        {"ops": {"monthly_composite": {"config": {"crs": "EPSG:3035", "resolution": 20}}}}
    )
    assert grid["crs"] == "EPSG:3035" and grid["resolution"] == 20
    assert composite_run_config({})["resolution"] is None


@pytest.mark.parametrize(
    ("platforms", "text"),
    [(["sentinel-9z"], "sentinel-9z"), ([], "is empty")],
)
def test_platform_filter_matching_nothing_fails_before_archiving(
    tmp_path: Path, sample_dir: Path, platforms: list[str], text: str
) -> None:
    """Issue 13 #2: a typo in ``platforms`` gave a green "no data" run."""
    settings = Settings(
        stac_url=str(sample_dir / "collection.json"), storage_root=str(tmp_path / "store")
    )
    resources = pipeline_resources(settings)
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    resources["storage"].aois().add("typo", feature)  # type: ignore[attr-defined]
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "store").rglob("*"))
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(aoi_partitions.name, ["typo"])
        result = materialize(
            [raw_scenes],
            instance=instance,
            resources=resources,
            partition_key=str(partition_key("typo", Month(2019, 7))),
            run_config={"ops": {"raw_scenes": {"config": {"platforms": platforms}}}},
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "platforms" in str(failure.event_specific_data) and text in str(
        failure.event_specific_data
    )
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "store").rglob("*"))
    assert after == before  # nothing archived
