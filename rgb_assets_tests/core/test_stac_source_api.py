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

from rgb_assets.core.aoi import Aoi
from rgb_assets.core.archive import archive_partition
from rgb_assets.core.collections import get_collection
from rgb_assets.core.compositing import CompositeOptions
from rgb_assets.core.masking import MaskRule
from rgb_assets.core.months import Month
from rgb_assets.core.products import make_composite
from rgb_assets.core.stac_source import ApiStacSource, LocalStacSource, SearchRequest
from rgb_assets.core.storage import Store
from rgb_assets_tests.servers.pgstac import pgstac_server

REPO = Path(__file__).resolve().parents[2]
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
        raw = archive_partition(source, spec, aoi, month, store)
        assert raw.stats["archived"] == 5
        result = make_composite(raw, spec, aoi, options, Path(tempfile.mkdtemp()))
        out[name] = xr.open_zarr(result.zarr_path, consolidated=True).load()
    for var in ("red", "green", "blue", "clear_count"):
        np.testing.assert_array_equal(out["api"][var].values, out["local"][var].values)


def test_unreachable_api_is_a_clear_error():
    from rgb_assets.core.errors import StacSourceError

    with pytest.raises(StacSourceError, match="127.0.0.1:9"):
        ApiStacSource("http://127.0.0.1:9/", timeout=1, max_retries=0)
