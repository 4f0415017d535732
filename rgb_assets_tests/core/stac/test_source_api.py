"""The pipeline against a live STAC API (pgstac on 127.0.0.1) gives what the local catalog gives.

The sample collection and its 140 items are loaded into a real stac-fastapi-pgstac server with
``file://`` hrefs; the API source must find the same items (through several pages, with the
CQL2 cloud-cover filter) and the composite made from them must equal the local-catalog one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr

from rgb_assets.core.archive.partition import archive_partition
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import get_collection
from rgb_assets.core.domain.errors import StacSourceError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import compute_composite, read_product
from rgb_assets.core.raster.compositing import CompositeOptions
from rgb_assets.core.raster.masking import MaskRule
from rgb_assets.core.stac.source import ApiStacSource, LocalStacSource, SearchRequest
from rgb_assets.core.storage.store import Store
from rgb_assets_tests.servers.pgstac import pgstac_server
from rgb_assets_tests.servers.proxy import StacApiProxy

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def own_pgstac(tmp_path_factory: pytest.TempPathFactory):
    """A server of this module's own: it holds all 140 sample items, which would change what
    other tests (the new-scenes sensor) see in the session-wide server."""
    with pgstac_server(tmp_path_factory.mktemp("pgstac-api")) as server:
        yield server


@pytest.fixture(scope="module")
def api(own_pgstac, sample_dir: Path) -> ApiStacSource:
    pgstac = own_pgstac
    collection = pystac.Collection.from_file(str(sample_dir / "collection.json"))
    items = []
    for item in collection.get_items():
        item.make_asset_hrefs_absolute()
        for asset in item.assets.values():
            asset.href = Path(asset.href).as_uri()
        d = item.to_dict(include_self_link=False)
        d["links"] = []
        d["collection"] = collection.id
        items.append(d)
    col = collection.to_dict(include_self_link=False)
    col["links"] = []
    pgstac.load_collection(col)
    pgstac.load_items(items)
    return ApiStacSource(pgstac.url, page_size=2, timeout=10, max_retries=2)


@pytest.fixture(scope="module")
def aoi() -> Aoi:
    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    return Aoi.create("api-check", feature)


@pytest.mark.parametrize("max_cc", [None, 100.0, 5.0])
def test_api_search_equals_local_search_across_pages(api, sample_dir, aoi, max_cc):
    local = LocalStacSource(sample_dir / "collection.json")
    for month in (Month(2019, 6), Month(2019, 7), Month(2019, 8), Month(2019, 5)):
        req = SearchRequest("sentinel-2-l2a", aoi, month, max_cloud_cover=max_cc)
        got = [i.id for i in api.search(req)]
        want = [i.id for i in local.search(req)]
        assert got == want
    # With page_size=2 a month of five or six scenes needs three pages.
    assert len(api.search(SearchRequest("sentinel-2-l2a", aoi, Month(2019, 8)))) == 6


def test_cloud_filter_is_applied_server_side(api, aoi):
    req = SearchRequest("sentinel-2-l2a", aoi, Month(2019, 7), max_cloud_cover=5.0)
    assert api.cql2_filter(req) == {
        "op": "<=",
        "args": [{"property": "eo:cloud_cover"}, 5.0],
    }
    items = api.search(req)
    assert items and all(i.properties["eo:cloud_cover"] <= 5.0 for i in items)


def test_composite_through_api_equals_local(api, sample_dir, aoi):
    spec = get_collection("sentinel-2-l2a")
    month = Month(2019, 7)
    options = CompositeOptions(mask=MaskRule("scl"))
    out = {}
    for name, source in (("api", api), ("local", LocalStacSource(sample_dir / "collection.json"))):
        store = Store(tempfile.mkdtemp(prefix=f"rgb-{name}-"))
        # The API serves the sample's local file hrefs: that folder is an allowed root.
        raw = archive_partition(source, spec, aoi, month, store, read_roots=(str(sample_dir),))
        assert raw.stats["archived"] == 5
        result = compute_composite(raw, spec, aoi, options, Path(tempfile.mkdtemp()))
        out[name] = xr.open_zarr(result.zarr_path, consolidated=True).load()
    for var in ("red", "green", "blue", "clear_count"):
        np.testing.assert_array_equal(out["api"][var].values, out["local"][var].values)


def test_unreachable_api_is_a_clear_error():
    from rgb_assets.core.domain.errors import StacSourceError

    with pytest.raises(StacSourceError, match="127.0.0.1:9"):
        ApiStacSource("http://127.0.0.1:9/", timeout=1, max_retries=0)


def test_search_retries_429_and_5xx_with_pystac_client_retry(api, own_pgstac, aoi):
    """Every 4th request to the API fails (503, 429, 503...); pystac-client's urllib3 Retry
    repeats each one and the paged search returns exactly what the API returns directly."""
    req = SearchRequest("sentinel-2-l2a", aoi, Month(2019, 8))
    direct = [i.id for i in api.search(req)]
    with StacApiProxy(own_pgstac.url, fail_every=4) as proxy:
        flaky = ApiStacSource(proxy.url, page_size=2, timeout=10, max_retries=3, backoff_factor=0)
        got = [i.id for i in flaky.search(req)]
    assert got == direct and len(direct) > 2  # more than one page
    assert 503 in proxy.failures and 429 in proxy.failures
    assert proxy.requests > 2 * len(proxy.failures)


def test_search_gives_up_with_a_clear_error_when_retries_run_out(own_pgstac, aoi):
    proxy = StacApiProxy(own_pgstac.url, fail_every=1)  # every request fails
    with proxy, pytest.raises(StacSourceError, match="cannot be opened"):
        ApiStacSource(proxy.url, timeout=5, max_retries=2, backoff_factor=0)
    assert len(proxy.failures) == 3  # the first try and two retries


def test_materialized_partition_through_api_equals_local_catalog(
    api, own_pgstac, sample_dir, tmp_path, monkeypatch
):
    """The Dagster job on the Dask executor, once with the STAC source set to the live API's
    URL and once to the local catalog: same composite, and the API run's raw items link back
    to their items on the API."""
    from dagster import DagsterInstance, execute_job, reconstructable

    from rgb_assets.aois import register_aoi
    from rgb_assets.core.storage.layout import PartitionPaths
    from rgb_assets.definitions import monthly_composite_job_def
    from rgb_assets.partitions import partition_key
    from rgb_assets.resources import StorageResource

    feature = json.loads((REPO / "data" / "sample_aoi.geojson").read_text())
    name, month = "api-e2e", Month(2019, 7)
    composites, via = {}, {}
    for source, url in (("api", own_pgstac.url), ("local", str(sample_dir / "collection.json"))):
        root = tmp_path / source
        # Read by the definitions that the executor's Dask workers import for each step.
        monkeypatch.setenv("RGB_ASSETS_STAC_URL", url)
        monkeypatch.setenv("RGB_ASSETS_ALLOWED_ROOTS", str(sample_dir))
        monkeypatch.setenv("RGB_ASSETS_STORAGE_ROOT", str(root))
        storage = StorageResource(root=str(root))
        tags = {
            "dagster/partition": str(partition_key(name, month)),
            "dagster/partition/aoi": name,
            "dagster/partition/month": month.partition_key,
        }
        with DagsterInstance.get() as instance:
            register_aoi(storage.aois(), instance, name, feature)
            with execute_job(
                reconstructable(monthly_composite_job_def), instance=instance, tags=tags
            ) as result:
                assert result.success, [e.message for e in result.all_events if e.is_failure]
        store = Store(str(root))
        product = read_product(store, PartitionPaths("sentinel-2-l2a", name, month))
        assert product is not None
        zarr = store.local_path(product[1].zarr)
        composites[source] = xr.open_zarr(zarr, consolidated=True).load()
        raw_items = [
            json.loads(p.read_text())
            for p in (root / "catalogs" / "raw").rglob("*.json")
            if json.loads(p.read_text()).get("type") == "Feature"
        ]
        assert len(raw_items) == 5
        via[source] = {
            link["href"] for item in raw_items for link in item["links"] if link["rel"] == "via"
        }
    for var in ("red", "green", "blue", "clear_count"):
        np.testing.assert_array_equal(
            composites["api"][var].values, composites["local"][var].values
        )
    assert all(h.startswith(f"{own_pgstac.url}/collections/") for h in via["api"]), via["api"]
    assert not any(h.startswith("http") for h in via["local"])


def test_stalled_search_times_out_with_a_clear_error(own_pgstac, aoi):
    """The timeout reaches every request (pystac-client's Client.open used to reset it to None,
    so a stalled server hung the search forever): each try gives up after ``timeout`` seconds,
    is retried, and then the search fails with a StacSourceError naming the source."""
    import time

    req = SearchRequest("sentinel-2-l2a", aoi, Month(2019, 8))
    with StacApiProxy(own_pgstac.url, search_delay_s=30) as proxy:
        slow = ApiStacSource(proxy.url, page_size=2, timeout=1, max_retries=1, backoff_factor=0)
        assert slow._client._stac_io.timeout == 1
        t0 = time.monotonic()
        with pytest.raises(StacSourceError, match=r"search failed.*(?i:timed? ?out)") as err:
            slow.search(req)
        elapsed = time.monotonic() - t0
    assert proxy.url in str(err.value)
    assert proxy.searches == 2  # the first try and one retry
    assert elapsed < 2 * 1 + 3, elapsed  # about timeout x tries, far below the 30 s stall


def test_search_survives_a_dropped_connection_through_retry(api, own_pgstac, aoi):
    """The first search request's connection is closed without an answer; the retry repeats it
    and the paged search returns what the API returns directly."""
    req = SearchRequest("sentinel-2-l2a", aoi, Month(2019, 8))
    direct = [i.id for i in api.search(req)]
    with StacApiProxy(own_pgstac.url, drop_searches=1) as proxy:
        source = ApiStacSource(proxy.url, page_size=2, timeout=10, max_retries=2, backoff_factor=0)
        got = [i.id for i in source.search(req)]
    assert got == direct and len(direct) > 2
    assert proxy.dropped == 1 and proxy.searches == proxy.dropped + 3  # three pages answered


@pytest.mark.parametrize("fault", ["hang", "down"])
def test_failing_api_fails_within_the_configured_total_bound(own_pgstac, aoi, fault):
    """Issue 13 #7: a hanging API used to fail after 6.5 min (60 s per try x 6 tries + backoff).
    With ``RGB_ASSETS_STAC_TIMEOUT_S`` (here 6 s) the whole search, retries and backoff
    included, fails within that bound; a 503 answering API with ``Retry-After`` the same."""
    import time

    from rgb_assets.config import Settings
    from rgb_assets.definitions import pipeline_resources

    req = SearchRequest("sentinel-2-l2a", aoi, Month(2019, 8))
    with StacApiProxy(own_pgstac.url) as proxy:
        env = {"RGB_ASSETS_STAC_URL": proxy.url, "RGB_ASSETS_STAC_TIMEOUT_S": "6"}
        stac = pipeline_resources(Settings.from_env(env))["stac"]
        source = stac.open()  # the API answers while being opened
        opened = proxy.requests
        if fault == "hang":
            proxy.search_delay_s = 60
        else:
            proxy.down = True
        t0 = time.monotonic()
        with pytest.raises(StacSourceError, match="search failed"):
            source.search(req)
        elapsed = time.monotonic() - t0
    assert elapsed <= 6 + 1, elapsed
    assert proxy.requests > opened  # the API was asked (and retried) within the bound


def test_default_total_bound_is_at_most_60_s():
    from rgb_assets.config import Settings
    from rgb_assets.definitions import pipeline_resources

    stac = pipeline_resources(Settings.from_env({}))["stac"]
    assert stac.timeout_s <= 60
