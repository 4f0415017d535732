"""build_definitions: one Settings makes the job, the executor and the resources."""

from __future__ import annotations

from pathlib import Path

from rgb_assets.config import Settings
from rgb_assets.definitions import build_definitions, pipeline_executor
from rgb_assets.executor import dask_executor


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(
        deployment="demo",
        stac_url=str(tmp_path / "catalog" / "collection.json"),
        storage_root=str(tmp_path / "store"),
        **changes,  # type: ignore[arg-type]
    )


def test_the_job_resolves_with_every_asset(tmp_path: Path):
    defs = build_definitions(_settings(tmp_path))
    job = defs.resolve_job_def("monthly_composite_job")
    assert {n.name for n in job.graph.node_defs} == {
        "raw_scenes",
        "raw_catalog",
        "monthly_composite",
        "derived_catalog",
        "aoi_timeseries",
    }
    assert job.executor_def is dask_executor


def test_resources_carry_the_settings(tmp_path: Path):
    settings = _settings(
        tmp_path,
        collection="landsat-c2-l2",
        publish_url="http://127.0.0.1:8082",
    )
    resources = build_definitions(settings).resources
    assert resources["stac"].url == settings.stac_url
    assert resources["stac"].collection == "landsat-c2-l2"
    assert resources["storage"].root == str(tmp_path / "store")
    assert resources["storage"].endpoint_url is None
    assert resources["catalogs"].publish_url == "http://127.0.0.1:8082"
    s3 = build_definitions(
        settings.replace(storage_root="s3://b/p", s3_endpoint_url="http://127.0.0.1:8333")
    ).resources["storage"]
    assert (s3.root, s3.endpoint_url) == ("s3://b/p", "http://127.0.0.1:8333")


def _cluster(executor) -> dict:
    """The cluster configuration an executor definition resolves to, given no run config."""
    resolved = executor.apply_config_mapping({})
    assert resolved.success, resolved.errors
    return (resolved.value or {}).get("config", {}).get("cluster", {})


def test_an_existing_scheduler_is_used_when_set(tmp_path: Path):
    """With ``dask_scheduler`` the job's executor is ours, configured for that scheduler."""
    address = "tcp://127.0.0.1:8786"
    job = build_definitions(_settings(tmp_path, dask_scheduler=address)).resolve_job_def(
        "monthly_composite_job"
    )
    assert job.executor_def.executor_creation_fn is dask_executor.executor_creation_fn
    assert _cluster(job.executor_def) == {"existing": {"address": address}}
    assert "existing" not in _cluster(pipeline_executor(_settings(tmp_path)))
