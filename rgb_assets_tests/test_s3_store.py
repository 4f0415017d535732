"""The whole pipeline on an S3-compatible object store (a real SeaweedFS on 127.0.0.1): raw
clips, composites and both catalogs written through s3fs, the composite read back from S3 by
odc-stac/GDAL on the store's endpoint, with the same result as on local disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from dagster import DagsterInstance, materialize
from rio_cogeo.cogeo import cog_validate

from rgb_assets.aois import register_aoi
from rgb_assets.assets import ALL_ASSETS
from rgb_assets.config import Settings
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import read_product
from rgb_assets.core.raster.timecube import cube_key, open_cube, read_composite
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import stac_io
from rgb_assets.definitions import pipeline_resources
from rgb_assets.partitions import partition_key
from rgb_assets.resources import StorageResource
from rgb_assets_tests.servers.seaweedfs import SeaweedS3, seaweed_s3

AOI, MONTH, COLLECTION = "carpathians-sample", Month(2019, 7), "sentinel-2-l2a"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with seaweed_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


def _run(storage: StorageResource, sample_dir: Path, times: int = 1) -> None:
    settings = Settings(
        stac_url=str(sample_dir / "collection.json"),
        collection=COLLECTION,
        storage_root=storage.root,
        s3_endpoint_url=storage.endpoint_url,
    )
    resources = pipeline_resources(settings)
    feature = json.loads((sample_dir.parents[1] / "data" / "sample_aoi.geojson").read_text())
    with DagsterInstance.ephemeral() as instance:
        register_aoi(storage.aois(), instance, AOI, feature)
        for _ in range(times):
            result = materialize(
                ALL_ASSETS,
                partition_key=partition_key(AOI, MONTH),
                resources=resources,
                instance=instance,
            )
            assert result.success


def _read(href: str, gdal: dict[str, str]) -> np.ndarray:
    with rasterio.Env(**gdal), rasterio.open(href) as src:
        return src.read()


def test_pipeline_on_s3_equals_local_disk(
    s3: SeaweedS3, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials through the AWS environment, which s3fs and GDAL both read; the endpoint
    # through the resource, which hands it to each of them.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    remote = StorageResource(root=f"s3://{s3.bucket}/store", endpoint_url=s3.endpoint_url)
    local = StorageResource(root=str(tmp_path / "store"))
    _run(remote, sample_dir, times=2)  # a re-run must replace, never duplicate
    _run(local, sample_dir)

    gdal = remote.gdal_options()
    assert gdal["AWS_S3_ENDPOINT"] == s3.endpoint_url.removeprefix("http://")
    store, disk = remote.store(), local.store()
    fs = s3.fs()

    # Raw archive: the same clips, as objects in the bucket.
    paths = PartitionPaths(COLLECTION, AOI, MONTH)
    raw_prefix = paths.raw
    remote_clips = sorted(
        p for p in fs.find(f"{s3.bucket}/store/{raw_prefix}") if p.endswith(".tif")
    )
    local_clips = sorted((tmp_path / "store" / raw_prefix).rglob("*.tif"))
    assert len(remote_clips) == len(local_clips) == 20  # 5 scenes x (red, green, blue, scl)

    # Composite: valid COGs read back from S3 through GDAL, equal to the local-disk run.
    remote_product, local_product = read_product(store, paths), read_product(disk, paths)
    assert remote_product is not None and local_product is not None
    keys = {"cog": remote_product[1].cog, "visual": remote_product[1].visual}
    local_keys = {"cog": local_product[1].cog, "visual": local_product[1].visual}
    keys["zarr"] = remote_product[1].zarr
    for kind in ("cog", "visual"):
        href = store.uri(keys[kind])
        assert href.startswith(f"s3://{s3.bucket}/")
        with rasterio.Env(**gdal):
            valid, errors, _ = cog_validate(href, quiet=True)
        assert valid, errors
        np.testing.assert_array_equal(
            _read(href, gdal), _read(str(disk.local_path(local_keys[kind])), {})
        )
    assert fs.exists(f"{s3.bucket}/store/{keys['zarr']}/.zmetadata") or fs.exists(
        f"{s3.bucket}/store/{keys['zarr']}/zarr.json"
    )

    # Catalogs: opened from S3 with pystac, hrefs in the bucket, no duplicates after two runs.
    for prefix, n in (("catalogs/raw", 5), ("catalogs/derived", 1)):
        root = pystac.Catalog.from_file(store.uri(f"{prefix}/catalog.json"), stac_io=stac_io(store))
        items = list(root.get_items(recursive=True))
        assert len(items) == n, prefix
        assert len({i.id for i in items}) == n
        for item in items:
            for asset in item.assets.values():
                assert asset.get_absolute_href().startswith(f"s3://{s3.bucket}/store/"), asset.href

    # Time cube: the month's chunks copied server-side in the bucket (created, then replaced
    # by the second run), equal to the local cube and to the composite.
    key = cube_key(COLLECTION, AOI)
    remote_cube, local_cube = open_cube(store, key), open_cube(disk, key)
    assert remote_cube is not None and local_cube is not None
    assert remote_cube.sizes["time"] == 1
    composite = read_composite(store, keys["zarr"])
    for name in ("red", "green", "blue", "clear_count"):
        remote_step = remote_cube[name].isel(time=0).values
        assert np.array_equal(remote_step, local_cube[name].isel(time=0).values, equal_nan=True)
        assert np.array_equal(remote_step, composite[name].values, equal_nan=True)


def test_endpoint_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from rgb_assets.core.domain.errors import InputError
    from rgb_assets.core.storage.store import gdal_s3_options

    assert gdal_s3_options(None) == {}  # AWS itself: GDAL's defaults
    assert gdal_s3_options("https://minio.example.org:9000") == {
        "AWS_S3_ENDPOINT": "minio.example.org:9000",
        "AWS_HTTPS": "YES",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }
    with pytest.raises(InputError) as e:
        gdal_s3_options("minio:9000")
    assert e.value.field == "endpoint_url"
    # The standard AWS variables reach the storage resource through the settings.
    env = {"RGB_ASSETS_STORAGE_ROOT": "s3://b/p", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    settings = Settings.from_env(env)
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    storage = pipeline_resources(settings)["storage"]
    assert storage.gdal_options()["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    env["AWS_ENDPOINT_URL_S3"] = "http://127.0.0.1:9001"
    assert Settings.from_env(env).s3_endpoint_url == "http://127.0.0.1:9001"
    assert Settings.from_env({"AWS_ENDPOINT_URL": "http://x:1"}).s3_endpoint_url is None
    assert StorageResource(root="/tmp/x").gdal_options() == {}  # local roots need nothing


def test_a_long_lived_store_sees_objects_other_processes_write(
    s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service (REST, viewer, sensor) keeps its store for hours while runs in other
    processes publish: a listing it made earlier must not hide their objects."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    service = StorageResource(root=f"s3://{s3.bucket}/listing", endpoint_url=s3.endpoint_url)
    store = service.store()
    store.write_text("products/a.json", "{}")
    assert store.listdir("products") == ["a.json"]
    assert store.exists("products/a.json") and not store.exists("products/b.json")
    # Another process (its own client, no shared cache) publishes a second object.
    other = type(s3.fs())(
        key=s3.access_key,
        secret=s3.secret_key,
        client_kwargs={"endpoint_url": s3.endpoint_url},
        skip_instance_cache=True,
    )
    other.pipe(f"{s3.bucket}/listing/products/b.json", b"{}")
    assert sorted(store.listdir("products")) == ["a.json", "b.json"]
    assert store.exists("products/b.json")
    assert json.loads(store.read_text("products/b.json")) == {}
