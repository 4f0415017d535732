"""The collection registry against real items from each provider (vendored, byte-identical).

Every provider spells the same bands differently (``red`` / ``B04`` / ``B04_10m`` / ``SR_B4``) and
carries scale/offset in different places or not at all; a wrong guess here silently shifts every
reflectance in a composite, so each case pins what the provider's real item resolves to.
"""

from __future__ import annotations

from pathlib import Path

import pystac
import pytest

from rgb_assets.core.domain.collection_specs import (
    LANDSAT_C2_L2,
    SENTINEL2_L2A,
    CollectionSpec,
    MissingAssetError,
    ResolvedItem,
    get_collection,
    resolve_item,
)
from rgb_assets.core.domain.errors import InputError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stac_items"

ES_V0_S2 = "S2A_28QCH_20200714_0_L2A.json"
PC_S2 = "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
PC_S2_RASTER = "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531_raster_ext.json"
CDSE_S2 = "S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914_cdse_stac_v110.json"
USGS_LC08 = "LC08_L2SP_028030_20200114_20200824_02_T1_SR.json"
USGS_LE07 = "LE07_L2SP_044033_20210329_20210424_02_T1_SR.json"
USGS_LC08_LEGACY = "LC08_L2SR_081119_20200101_20200823_02_T2.json"

S2_SCALE = 1e-4
LANDSAT_SCALE, LANDSAT_OFFSET = 2.75e-5, -0.2


def load(name: str) -> pystac.Item:
    return pystac.Item.from_file(str(FIXTURES / name))


def pixel_size(item: pystac.Item, key: str) -> float:
    """Native pixel size of one asset, from its ``proj:transform``."""
    return float(item.assets[key].extra_fields["proj:transform"][0])


def assert_radiometry(
    r: ResolvedItem, scale: float, offset: float, nodata: float | None, mask_nodata: float | None
) -> None:
    for name, band in r.bands.items():
        assert band.scale == pytest.approx(scale, rel=1e-9), name
        assert band.offset == pytest.approx(offset, abs=1e-12), name
        assert band.nodata == nodata, name
    assert (r.mask.scale, r.mask.offset) == (1.0, 0.0), "mask values are classes/bits, never scaled"
    assert r.mask.nodata == mask_nodata


# --- Sentinel-2 L2A ------------------------------------------------------------------------


def test_earth_search_v0_sentinel2() -> None:
    """Old Earth Search COGs: upper-case keys, no raster extension, no baseline (pre-2022)."""
    r = resolve_item(load(ES_V0_S2), SENTINEL2_L2A)
    assert r.asset_keys == {"red": "B04", "green": "B03", "blue": "B02", "mask": "SCL"}
    assert r.processing_baseline is None
    assert_radiometry(r, S2_SCALE, 0.0, 0, 0)
    assert r.epsg == 32628
    assert pixel_size(r.item, "B04") == SENTINEL2_L2A.resolution == 10.0
    assert pixel_size(r.item, "SCL") == 20.0


@pytest.mark.parametrize("name", [PC_S2, PC_S2_RASTER])
def test_planetary_computer_sentinel2(name: str) -> None:
    """PC items carry no scale/offset: registry scale, offset from the baseline (02.12 → 0)."""
    r = resolve_item(load(name), SENTINEL2_L2A)
    assert r.asset_keys == {"red": "B04", "green": "B03", "blue": "B02", "mask": "SCL"}
    assert r.processing_baseline == "02.12"
    assert_radiometry(r, S2_SCALE, 0.0, 0, 0)
    assert r.epsg == 32606
    assert pixel_size(r.item, "B04") == 10.0
    expected_type = "uint16" if name == PC_S2_RASTER else None
    assert r.bands["red"].data_type == expected_type


@pytest.mark.parametrize(
    ("baseline", "offset"),
    [("02.12", 0.0), ("03.01", 0.0), ("04.00", -0.1), ("05.10", -0.1), ("05.11", -0.1)],
)
def test_planetary_computer_sentinel2_baseline_rule(baseline: str, offset: float) -> None:
    """From baseline 04.00 (2022-01-25) DN carry +1000; PC items do not say so, the rule must."""
    item = load(PC_S2).clone()
    item.properties["s2:processing_baseline"] = baseline
    r = resolve_item(item, SENTINEL2_L2A)
    assert r.processing_baseline == baseline
    assert_radiometry(r, S2_SCALE, offset, 0, 0)


def test_cdse_sentinel2_stac_1_1() -> None:
    """STAC 1.1: ``proj:code`` and ``bands`` inside assets, raster scale/offset on the asset."""
    r = resolve_item(load(CDSE_S2), SENTINEL2_L2A)
    assert r.asset_keys == {
        "red": "B04_10m",
        "green": "B03_10m",
        "blue": "B02_10m",
        "mask": "SCL_20m",
    }
    assert r.processing_baseline == "05.11"
    assert_radiometry(r, S2_SCALE, -0.1, 0, 0)
    assert r.bands["red"].data_type == "uint16"
    assert r.epsg == 32633
    assert "proj:epsg" not in r.item.properties, "EPSG must come from proj:code here"
    assert pixel_size(r.item, "B04_10m") == 10.0
    assert pixel_size(r.item, "SCL_20m") == 20.0


# --- Landsat Collection 2 Level-2 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "epsg", "red_band", "blue_band"),
    [(USGS_LC08, 32615, "B4", "B2"), (USGS_LE07, 32610, "B3", "B1")],
)
def test_usgs_landsat(name: str, epsg: int, red_band: str, blue_band: str) -> None:
    """USGS keys by common name, so ETM+ (red = B3) and OLI (red = B4) both resolve correctly."""
    r = resolve_item(load(name), LANDSAT_C2_L2)
    assert r.asset_keys == {
        "red": "red",
        "green": "green",
        "blue": "blue",
        "mask": "qa_pixel",
        "radsat": "qa_radsat",
    }
    assert r.item.assets["red"].extra_fields["eo:bands"][0]["name"] == red_band
    assert r.item.assets["blue"].extra_fields["eo:bands"][0]["name"] == blue_band
    # No raster extension: registry scale/offset; QA_PIXEL's fill is a bit, not a nodata value.
    assert_radiometry(r, LANDSAT_SCALE, LANDSAT_OFFSET, 0, None)
    assert r.epsg == epsg
    assert LANDSAT_C2_L2.resolution == float(r.item.properties["proj:transform"][0]) == 30.0


def test_usgs_legacy_tif_keys_are_refused_not_guessed() -> None:
    """``SR_B4.TIF`` is NIR on Landsat 4-7, so an unknown key must fail loudly, not be guessed."""
    item = load(USGS_LC08_LEGACY)
    with pytest.raises(MissingAssetError) as err:
        resolve_item(item, LANDSAT_C2_L2)
    assert err.value.item_id == "LC08_L2SR_081119_20200101_20200823_02_T2"
    assert err.value.band == "red"
    assert "LC08_L2SR_081119_20200101_20200823_02_T2" in str(err.value)


def pc_legacy_landsat8_item() -> pystac.Item:
    """A PC ``landsat-8-c2-l2`` item as served (keys ``SR_B4``/``QA_PIXEL``, no raster ext)."""
    scene = "LC08_L2SP_197023_20220324_20220330_02_T1"
    base = (
        "https://landsateuwest.blob.core.windows.net/landsat-c2/level-2/standard/oli-tirs/"
        f"2022/197/023/{scene}/{scene}"
    )
    item = pystac.Item(
        id="LC08_L2SP_197023_20220324_02_T1",
        geometry=None,
        bbox=None,
        datetime=pystac.utils.str_to_datetime("2022-03-24T10:27:05.856308Z"),
        properties={"platform": "landsat-8", "proj:epsg": 32632, "eo:cloud_cover": 0.99},
        collection="landsat-8-c2-l2",
    )
    bands = {"SR_B2": "blue", "SR_B3": "green", "SR_B4": "red", "SR_B5": "nir08"}
    for key, common in bands.items():
        item.add_asset(
            key,
            pystac.Asset(
                f"{base}_{key}.TIF",
                extra_fields={"gsd": 30.0, "eo:bands": [{"name": key, "common_name": common}]},
            ),
        )
    for key in ("QA_PIXEL", "QA_RADSAT"):
        item.add_asset(key, pystac.Asset(f"{base}_{key}.TIF", extra_fields={"gsd": 30.0}))
    return item


def test_planetary_computer_legacy_landsat8_keys() -> None:
    """PC's legacy collection: upper-case keys and no raster extension → registry 2.75e-5/-0.2."""
    item = pc_legacy_landsat8_item()
    spec = get_collection(item.collection_id or "")
    assert spec is LANDSAT_C2_L2
    r = resolve_item(item, spec)
    assert r.asset_keys == {
        "red": "SR_B4",
        "green": "SR_B3",
        "blue": "SR_B2",
        "mask": "QA_PIXEL",
        "radsat": "QA_RADSAT",
    }
    assert r.bands["red"].href.endswith("_SR_B4.TIF")
    assert_radiometry(r, LANDSAT_SCALE, LANDSAT_OFFSET, 0, None)
    assert r.epsg == 32632
    assert r.processing_baseline is None


# --- Missing assets and unknown collections -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spec", "remove", "band"),
    [
        (ES_V0_S2, SENTINEL2_L2A, ("B04",), "red"),
        (ES_V0_S2, SENTINEL2_L2A, ("SCL",), "mask"),
        # The 3-band 'visual' asset also lists red; it must not stand in for B04.
        (PC_S2, SENTINEL2_L2A, ("B04",), "red"),
        (PC_S2, SENTINEL2_L2A, ("B02",), "blue"),
        (PC_S2, SENTINEL2_L2A, ("SCL",), "mask"),
        (CDSE_S2, SENTINEL2_L2A, ("B03_10m", "B03_20m", "B03_60m"), "green"),
        (CDSE_S2, SENTINEL2_L2A, ("SCL_20m",), "mask"),
        (USGS_LC08, LANDSAT_C2_L2, ("blue",), "blue"),
        (USGS_LC08, LANDSAT_C2_L2, ("qa_pixel",), "mask"),
        (USGS_LE07, LANDSAT_C2_L2, ("red",), "red"),
    ],
)
def test_missing_required_asset(
    name: str, spec: CollectionSpec, remove: tuple[str, ...], band: str
) -> None:
    """A skipped item must be traceable: the error names the item and the band it lacked."""
    item = load(name).clone()
    for key in remove:
        del item.assets[key]
    with pytest.raises(MissingAssetError) as err:
        resolve_item(item, spec)
    assert err.value.item_id == item.id
    assert err.value.band == band
    assert item.id in str(err.value)
    assert repr(band) in str(err.value)
    assert isinstance(err.value, InputError)


def test_missing_radsat_is_optional() -> None:
    """QA_RADSAT is optional: without it the item still resolves, minus saturation masking."""
    item = load(USGS_LC08).clone()
    del item.assets["qa_radsat"]
    r = resolve_item(item, LANDSAT_C2_L2)
    assert r.extra_masks == {}
    assert "radsat" not in r.asset_keys


def test_unknown_collection() -> None:
    with pytest.raises(InputError) as err:
        get_collection("nope")
    assert err.value.field == "collection"
    assert "'nope'" in err.value.problem
    assert "sentinel-2-l2a" in err.value.problem


@pytest.mark.parametrize(
    ("key", "spec"),
    [
        ("sentinel-2-l2a", SENTINEL2_L2A),
        ("sentinel-s2-l2a-cogs", SENTINEL2_L2A),
        ("landsat-c2-l2", LANDSAT_C2_L2),
        ("landsat-8-c2-l2", LANDSAT_C2_L2),
    ],
)
def test_collection_aliases(key: str, spec: CollectionSpec) -> None:
    """Provider-specific ids of the real items above map to the registry's collections."""
    assert get_collection(key) is spec
