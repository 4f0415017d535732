"""Resources: the store, its S3 endpoint and GDAL options, the STAC source, the catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgb_assets.core.domain.aoi import Aoi, AoiRegistry
from rgb_assets.core.domain.collection_specs import EARTH_SEARCH_URL
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.source import SearchRequest
from rgb_assets.resources import CatalogsResource, StacSourceResource, StorageResource

ENDPOINT = "http://127.0.0.1:8333"


def test_local_store(tmp_path: Path):
    storage = StorageResource(root=str(tmp_path / "store"), endpoint_url=ENDPOINT)
    store = storage.store()
    assert store.is_local and store.root == str(tmp_path / "store")
    assert storage.s3_endpoint() is None, "an endpoint never applies to a local root"
    assert storage.gdal_options() == {}
    assert isinstance(storage.aois(), AoiRegistry)
    assert storage.aois().store.root == store.root


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint_url": ENDPOINT},
        {"storage_options": {"endpoint_url": ENDPOINT}},
        {"storage_options": {"client_kwargs": {"endpoint_url": ENDPOINT}}},
    ],
)
def test_s3_endpoint_from_any_of_its_places(kwargs: dict):
    storage = StorageResource(root="s3://bucket/prefix", **kwargs)
    assert storage.s3_endpoint() == ENDPOINT
    assert storage.gdal_options() == {
        "AWS_S3_ENDPOINT": "127.0.0.1:8333",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def test_s3_store_is_built_with_the_endpoint():
    storage = StorageResource(root="s3://bucket/prefix", endpoint_url=ENDPOINT)
    store = storage.store()
    assert not store.is_local
    assert store.uri("a/b.tif") == "s3://bucket/prefix/a/b.tif"
    assert store.fs.client_kwargs["endpoint_url"] == ENDPOINT
    assert storage.storage_options == {}, "building a store does not change the configuration"


def test_aws_itself_needs_no_gdal_options():
    storage = StorageResource(root="s3://bucket/prefix")
    assert storage.s3_endpoint() is None and storage.gdal_options() == {}


def test_bad_endpoint_names_the_field():
    storage = StorageResource(root="s3://bucket", endpoint_url="127.0.0.1:8333")
    with pytest.raises(InputError) as e:
        storage.gdal_options()
    assert e.value.field == "endpoint_url"


def test_stac_source_spec_and_open(sample_dir: Path):
    stac = StacSourceResource(url=str(sample_dir / "collection.json"))
    spec = stac.spec()
    assert spec.key == "sentinel-2-l2a"
    source = stac.open()
    assert source.url == str(sample_dir / "collection.json")
    area = Aoi.create(
        "a",
        {
            "type": "Polygon",
            "coordinates": [
                [
                    [22.146, 45.201],
                    [22.158, 45.201],
                    [22.158, 45.209],
                    [22.146, 45.209],
                    [22.146, 45.201],
                ]
            ],
        },
    )
    found = source.search(SearchRequest(source.collection_id(spec), area, Month(2019, 3)))
    assert sorted(i.id for i in found) == [
        "S2_L2A_RO_SAMPLE_20190323",
        "S2_L2A_RO_SAMPLE_20190328",
    ]


def test_stac_source_defaults_and_landsat():
    stac = StacSourceResource()
    assert stac.url == EARTH_SEARCH_URL and stac.collection == "sentinel-2-l2a"
    assert StacSourceResource(collection="landsat-c2-l2").spec().key == "landsat-c2-l2"
    with pytest.raises(InputError):
        StacSourceResource(collection="modis").spec()


def test_catalogs_resource():
    assert CatalogsResource().publish_url is None
    url = "http://127.0.0.1:8082"
    assert CatalogsResource(publish_url=url).publish_url == url
