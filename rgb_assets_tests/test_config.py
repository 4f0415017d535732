"""The one configuration reader: validation, the README table, and no other environment reads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from rgb_assets.config import SETTINGS, Settings, merge_run_config
from rgb_assets.core.domain.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_readme_table_lists_exactly_the_settings():
    text = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", text, flags=re.M))
    assert documented == {s.variable for s in SETTINGS}


def test_no_module_but_config_reads_the_environment():
    found = subprocess.run(
        ["grep", "-rnE", r"os\.environ|os\.getenv|getenv\(", "rgb_assets"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert found and all(line.startswith("rgb_assets/config.py:") for line in found), found


def test_every_variable_read_is_documented():
    source = (REPO / "rgb_assets" / "config.py").read_text()
    read = set(re.findall(r'env\.get\("([A-Z0-9_]+)"', source))
    assert read and read <= {s.variable for s in SETTINGS}


def test_defaults_and_demo_deployment():
    s = Settings.from_env({})
    assert s.deployment == "local" and s.stac_url.startswith("https://earth-search")
    assert Path(s.storage_root).is_absolute() and s.dask_scheduler is None
    demo = Settings.from_env({"RGB_ASSETS_DEPLOYMENT": "demo"})
    assert (
        demo.stac_url.endswith("data/sample/collection.json") and Path(demo.stac_url).is_absolute()
    )


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"RGB_ASSETS_DEPLOYMENT": "prod"}, "RGB_ASSETS_DEPLOYMENT"),
        ({"RGB_ASSETS_COLLECTION": "modis"}, "RGB_ASSETS_COLLECTION"),
        ({"RGB_ASSETS_STORAGE_ROOT": "ftp://host/x"}, "RGB_ASSETS_STORAGE_ROOT"),
        ({"RGB_ASSETS_FIRST_MONTH": "2013"}, "RGB_ASSETS_FIRST_MONTH"),
        ({"RGB_ASSETS_SENSOR_LOOKBACK_MONTHS": "two"}, "RGB_ASSETS_SENSOR_LOOKBACK_MONTHS"),
        ({"RGB_ASSETS_MAX_TOI_MONTHS": "0"}, "RGB_ASSETS_MAX_TOI_MONTHS"),
        ({"RGB_ASSETS_SENSOR_REFERENCE_MONTH": "July"}, "RGB_ASSETS_SENSOR_REFERENCE_MONTH"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], field: str):
    with pytest.raises(InputError) as e:
        Settings.from_env(env)
    assert e.value.field == field


def test_resource_run_config_carries_store_source_and_publishing():
    s = Settings.from_env(
        {
            "RGB_ASSETS_STORAGE_ROOT": "s3://bucket/p",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "RGB_ASSETS_STAC_URL": "http://127.0.0.1:8081",
            "RGB_ASSETS_COLLECTION": "landsat-c2-l2",
            "RGB_ASSETS_PUBLISH_URL": "http://127.0.0.1:8082",
        }
    )
    cfg = s.resource_run_config()
    assert cfg["storage"]["config"] == {
        "root": "s3://bucket/p",
        "endpoint_url": "http://127.0.0.1:9000",
    }
    assert cfg["stac"]["config"] == {
        "url": "http://127.0.0.1:8081",
        "collection": "landsat-c2-l2",
        "timeout_s": 60.0,
        "allowed_roots": [],
    }
    assert cfg["catalogs"]["config"] == {"publish_url": "http://127.0.0.1:8082"}
    assert cfg["limits"]["config"]["max_aoi_vertices"] == 10_000


def test_limits_and_allowed_roots_are_read_and_validated(tmp_path):
    """Issue 13 settings: limits, allowed roots, the STAC bound and the API token."""
    s = Settings.from_env(
        {
            "RGB_ASSETS_MAX_SCENES": "7",
            "RGB_ASSETS_MAX_AOI_AREA_KM2": "12.5",
            "RGB_ASSETS_ALLOWED_ROOTS": f"{tmp_path}:{tmp_path}/../{tmp_path.name}",
            "RGB_ASSETS_STAC_TIMEOUT_S": "20",
            "RGB_ASSETS_API_TOKEN": "t",
        }
    )
    assert s.limits.max_scenes == 7 and s.limits.max_aoi_area_km2 == 12.5
    assert s.allowed_roots == (str(tmp_path.resolve()),) * 2
    assert s.stac_timeout_s == 20 and s.api_token == "t"
    for variable, value in (
        ("RGB_ASSETS_MAX_SCENES", "0"),
        ("RGB_ASSETS_MAX_AOI_AREA_KM2", "nan"),
        ("RGB_ASSETS_MAX_BODY_BYTES", "1e6"),
        ("RGB_ASSETS_ALLOWED_ROOTS", str(tmp_path / "missing")),
        ("RGB_ASSETS_STAC_TIMEOUT_S", "0"),
    ):
        with pytest.raises(InputError) as e:
            Settings.from_env({variable: value})
        assert e.value.field == variable


def test_user_run_config_wins_over_settings():
    settings = {"resources": {"storage": {"config": {"root": "/a"}}, "stac": {"config": {}}}}
    user = {"resources": {"storage": {"config": {"root": "/b"}}}, "ops": {"x": {}}}
    merged = merge_run_config(settings, user)
    assert merged["resources"]["storage"]["config"]["root"] == "/b"
    assert "stac" in merged["resources"] and "ops" in merged
