"""The registry and masks against real items from many providers and real Landsat 8 scenes.

Reads ``$RGB_ASSETS_CASES_DIR`` (``../shared/cases`` in CI; never copied into the repository):
``stac_real/`` holds hundreds of real search results from Earth Search v0/v1, Planetary Computer,
USGS and CDSE, and ``landsat_c2l2_scenes_downsampled/`` five real scenes (SR_B2..B5, QA_PIXEL,
MTL). Unset, the whole module is deselected by ``conftest.py``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import yaml

from rgb_assets.core.domain.collection_specs import (
    LANDSAT_C2_L2,
    SENTINEL2_L2A,
    CollectionSpec,
    MissingAssetError,
    ResolvedItem,
    default_offset,
    get_collection,
    resolve_item,
)
from rgb_assets.core.raster.masking import MaskRule
from rgb_assets.core.raster.stats import PLAUSIBLE_REFLECTANCE
from rgb_assets_tests.cases import cases_dir
from rgb_assets_tests.reference import to_reflectance

pytestmark = pytest.mark.cases

ROOT = cases_dir()
STAC_DIR = ROOT / "stac_real" if ROOT else None
SCENES_DIR = ROOT / "landsat_c2l2_scenes_downsampled" if ROOT else None

# Every collection id met in the cases is either ours (→ spec) or deliberately not; a new id
# fails `test_every_collection_is_classified` so someone decides which it is.
SPEC_FOR_COLLECTION: dict[str, CollectionSpec] = {
    "sentinel-2-l2a": SENTINEL2_L2A,
    "sentinel-s2-l2a-cogs": SENTINEL2_L2A,  # Earth Search v0
    "sentinel-2-c1-l2a": SENTINEL2_L2A,  # Earth Search v1, Collection-1 reprocessing
    "landsat-c2-l2": LANDSAT_C2_L2,
    "landsat-8-c2-l2": LANDSAT_C2_L2,  # Planetary Computer legacy
    "landsat-c2l2-sr": LANDSAT_C2_L2,  # USGS LandsatLook
}
NOT_OURS: set[str | None] = {
    "sentinel-2-l1c",  # top-of-atmosphere, no SCL
    "sentinel-1-grd",
    "naip",
    None,  # the Geoscience Australia Landsat ARD item (nbart_*/oa_fmask) has no collection id
}
# Items that genuinely lack a required asset under every key the registry accepts: the USGS
# per-scene metadata format (STAC 0.7 / 1.0.0-beta.2) keys bands as 'SR_B4.TIF'/'QA_PIXEL.TIF'.
# 'SR_B4.TIF' is NIR on Landsat 4-7, so refusing these is right; observed in the cases: 4.
EXPECTED_MISSING = {
    "LC08_L2SP_047027_20201204_20210313_02_T1": "red",
    "LC08_L2SR_081119_20200101_20200823_02_T2": "red",
    "LC08_L2SR_084024_20160111_20201016_02_T1": "mask",
    "LE07_L2SP_021030_20100109_20200911_02_T1": "mask",
}
# Fewest resolved items (unique collection/id pairs) observed; fewer means cases went missing.
MIN_RESOLVED = {SENTINEL2_L2A.key: 75, LANDSAT_C2_L2.key: 270}
BASELINE_04_START = datetime(2022, 1, 25, tzinfo=UTC)
BOA_APPLIED = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")


def _item_dicts(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, list):
        yield from (d for d in doc if isinstance(d, dict) and d.get("type") == "Feature")
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        yield from doc.get("features", [])
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        yield doc


def _read_items(path: Path) -> list[dict[str, Any]]:
    """Items in a JSON/GeoJSON file or in the JSON response bodies of a VCR cassette."""
    if path.suffix == ".yaml":
        items: list[dict[str, Any]] = []
        for exchange in yaml.safe_load(path.read_text())["interactions"]:
            body = exchange["response"]["body"].get("string") or ""
            try:
                items.extend(_item_dicts(json.loads(body)))
            except json.JSONDecodeError:
                continue
        return items
    return list(_item_dicts(json.loads(path.read_text())))


def _sources() -> list[str]:
    if STAC_DIR is None or not STAC_DIR.is_dir():
        return []
    files = [p for p in STAC_DIR.rglob("*") if p.suffix in (".json", ".geojson", ".yaml")]
    return sorted(str(p.relative_to(STAC_DIR)) for p in files)


def _scenes() -> list[str]:
    if SCENES_DIR is None or not SCENES_DIR.is_dir():
        return []
    return sorted(p.name for p in SCENES_DIR.iterdir() if p.is_dir())


@dataclass(frozen=True)
class Outcome:
    source: str
    collection: str
    item: pystac.Item
    resolved: ResolvedItem | None
    error: MissingAssetError | None


@cache
def outcomes(source: str) -> tuple[Outcome, ...]:
    """Resolve every item of ours in one source file (cached: several tests read the result)."""
    assert STAC_DIR is not None
    out = []
    for d in _read_items(STAC_DIR / source):
        coll = d.get("collection")
        spec = SPEC_FOR_COLLECTION.get(coll or "")
        if spec is None:
            continue
        with warnings.catch_warnings():
            # pystac's storage-extension migration complains about Earth Search v1 hrefs.
            warnings.filterwarnings("ignore", "Could not parse bucket", UserWarning)
            item = pystac.Item.from_dict(d, preserve_dict=True)
        try:
            out.append(Outcome(source, coll, item, resolve_item(item, spec), None))
        except MissingAssetError as e:
            out.append(Outcome(source, coll, item, None, e))
    return tuple(out)


def test_cases_present() -> None:
    """Guard against a vacuous run: the providers the README promises are all there."""
    sources = _sources()
    for provider in ("earth-search-v0", "earth-search-v1", "planetary-computer", "usgs", "cdse"):
        assert any(s.startswith(provider + "/") for s in sources), provider
    assert len(_scenes()) == 5


def test_every_collection_is_classified() -> None:
    assert STAC_DIR is not None
    seen = {d.get("collection") for s in _sources() for d in _read_items(STAC_DIR / s)}
    assert seen - set(SPEC_FOR_COLLECTION) - NOT_OURS == set()
    for coll in ("sentinel-2-l2a", "sentinel-s2-l2a-cogs", "landsat-c2-l2", "landsat-8-c2-l2"):
        assert get_collection(coll) is SPEC_FOR_COLLECTION[coll], "registry alias drifted"


def declared_offset(item: pystac.Item, key: str) -> float | None:
    """The offset a provider states for one asset (STAC 1.0 ``raster:bands`` or 1.1 fields)."""
    fields = item.assets[key].extra_fields
    bands = fields.get("raster:bands") or []
    if bands and "offset" in bands[0]:
        return float(bands[0]["offset"])
    for k in ("raster:offset", "offset"):
        if k in fields:
            return float(fields[k])
    return None


def expected_s2_offset(r: ResolvedItem, key: str) -> float:
    """What a Sentinel-2 L2A asset's offset should be, from the item's own statements.

    Earth Search's ``*:boa_offset_applied: true`` means the COG pixel values were already shifted
    back by 1000 DN (cirrus-geo/cirrus-earth-search#21), so no offset remains to apply.
    """
    declared = declared_offset(r.item, key)
    if declared is not None:
        return declared
    if any(r.item.properties.get(k) is True for k in BOA_APPLIED):
        return 0.0
    if r.processing_baseline is None:
        assert r.datetime < BASELINE_04_START, f"{r.id}: baseline unknown after 04.00"
    return default_offset(SENTINEL2_L2A, r.processing_baseline)


@pytest.mark.parametrize("source", _sources())
def test_items_resolve(source: str) -> None:
    """Each item of ours resolves to RGB + mask with the radiometry its product defines."""
    for o in outcomes(source):
        if o.resolved is None:
            assert o.error is not None
            assert o.item.id in str(o.error) and repr(o.error.band) in str(o.error)
            continue
        r = o.resolved
        spec = SPEC_FOR_COLLECTION[o.collection]
        assert set(r.bands) == {"red", "green", "blue"}, o.item.id
        assert all(b.href for b in (*r.bands.values(), r.mask)), o.item.id
        assert r.epsg is not None, o.item.id
        for name, band in r.bands.items():
            what = f"{o.item.id} {name}"
            assert band.scale == pytest.approx(spec.scale, rel=1e-6), what
            assert band.nodata == 0, what
            if spec is SENTINEL2_L2A:
                expected = expected_s2_offset(r, band.key)
                assert band.offset == pytest.approx(expected, abs=1e-9), what
            else:
                assert band.offset == pytest.approx(spec.offset, abs=1e-9), what
                assert r.mask.key.lower() in ("qa_pixel", "qa_pixel_bitmask"), what


@pytest.mark.parametrize("source", _sources())
def test_declared_offsets_agree_with_baseline_rule(source: str) -> None:
    """Where a provider states the offset itself, it matches the baseline rule used for the rest."""
    for o in outcomes(source):
        if o.resolved is None or SPEC_FOR_COLLECTION[o.collection] is not SENTINEL2_L2A:
            continue
        declared = declared_offset(o.item, o.resolved.bands["red"].key)
        if declared is not None:
            assert o.resolved.processing_baseline is not None, o.item.id
            rule = default_offset(SENTINEL2_L2A, o.resolved.processing_baseline)
            assert declared == pytest.approx(rule, abs=1e-9), o.item.id


def test_missing_assets_are_the_known_legacy_items() -> None:
    """Only the USGS per-scene legacy items fail, and none of the accepted keys is present."""
    missing: dict[str, str] = {}
    resolved: dict[str, set[tuple[str, str]]] = {k: set() for k in MIN_RESOLVED}
    for source in _sources():
        for o in outcomes(source):
            spec = SPEC_FOR_COLLECTION[o.collection]
            if o.error is not None:
                missing[o.item.id] = o.error.band
                assert not set(spec.asset_keys[o.error.band]) & set(o.item.assets), o.item.id
                assert any(k.endswith(".TIF") for k in o.item.assets), o.item.id
            else:
                resolved[spec.key].add((o.collection, o.item.id))
    assert missing == EXPECTED_MISSING
    assert len(missing) == 4
    for key, floor in MIN_RESOLVED.items():
        assert len(resolved[key]) >= floor, (key, len(resolved[key]))


def provider_of(o: Outcome) -> str:
    """The provider an item came from: its folder, or for recorded searches its self link."""
    folder = o.source.split("/")[0]
    if folder != "cassettes":
        return folder
    links = [lk for lk in o.item.links if lk.rel in ("self", "root", "collection")]
    hrefs = " ".join(lk.get_target_str() or "" for lk in links)
    if "earth-search" in hrefs:
        return "earth-search-v1" if "/v1" in hrefs else "earth-search-v0"
    if "planetarycomputer" in hrefs:
        return "planetary-computer"
    raise AssertionError(f"{o.source} {o.item.id}: provider unknown from links {hrefs!r}")


# The mask asset key each provider uses, per collection: a provider renaming it must be noticed.
MASK_KEY = {
    ("earth-search-v1", "sentinel-2-l2a"): "scl",
    ("earth-search-v1", "sentinel-2-c1-l2a"): "scl",
    ("earth-search-v1", "landsat-c2-l2"): "qa_pixel",
    ("earth-search-v0", "sentinel-s2-l2a-cogs"): "SCL",
    ("planetary-computer", "sentinel-2-l2a"): "SCL",
    ("planetary-computer", "landsat-c2-l2"): "qa_pixel",
    ("planetary-computer", "landsat-8-c2-l2"): "QA_PIXEL",
    ("usgs", "landsat-c2l2-sr"): "qa_pixel",
    ("cdse", "sentinel-2-l2a"): "SCL_20m",
}
PIXEL_SIZE = {SENTINEL2_L2A.key: 10.0, LANDSAT_C2_L2.key: 30.0}


def _pixel_size(item: pystac.Item, key: str) -> float | None:
    """The asset's pixel size from ``proj:transform`` (asset first, then item)."""
    t = item.assets[key].extra_fields.get("proj:transform") or item.properties.get("proj:transform")
    return float(t[0]) if t else None


def _utm_or_polar(epsg: int) -> bool:
    return 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760 or epsg in (3031, 3413)


def test_provider_specifics() -> None:
    """Per provider: the mask key, Earth Search v1's declared -0.1 offset for baseline >= 04.00,
    Landsat's 2.75e-05 scale and -0.2 offset, a projected EPSG code and the native pixel size."""
    seen: dict[tuple[str, str], int] = {}
    es_v1_s2_new_baseline = 0
    for source in _sources():
        for o in outcomes(source):
            if o.resolved is None:
                continue
            r, spec, provider = o.resolved, SPEC_FOR_COLLECTION[o.collection], provider_of(o)
            what = f"{source} {o.item.id}"
            seen[(provider, o.collection)] = seen.get((provider, o.collection), 0) + 1
            assert r.mask.key == MASK_KEY[(provider, o.collection)], what
            assert r.epsg is not None and _utm_or_polar(r.epsg), (what, r.epsg)
            red = r.bands["red"].key
            size = _pixel_size(o.item, red)
            assert size is not None and size == pytest.approx(PIXEL_SIZE[spec.key]), (what, size)
            if spec is LANDSAT_C2_L2:
                for name, band in r.bands.items():
                    assert band.scale == pytest.approx(2.75e-05, rel=1e-9), (what, name)
                    assert band.offset == pytest.approx(-0.2, abs=1e-12), (what, name)
            elif provider == "earth-search-v1":
                assert r.processing_baseline is not None, what
                if r.processing_baseline >= "04.00":
                    es_v1_s2_new_baseline += 1
                    for name, band in r.bands.items():
                        assert declared_offset(o.item, band.key) == pytest.approx(-0.1), what
                        assert band.offset == pytest.approx(-0.1, abs=1e-12), (what, name)
    # Every provider/collection pair is met (a vacuous pass is not a pass).
    assert set(seen) == set(MASK_KEY), set(MASK_KEY) ^ set(seen)
    assert es_v1_s2_new_baseline >= 13


# --- Real Landsat 8 scenes -------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    name: str
    qa: np.ndarray
    sr: dict[int, np.ndarray]
    cloud_cover: float
    mtl: dict[str, Any]


@cache
def load_scene(name: str) -> Scene:
    assert SCENES_DIR is not None
    d = SCENES_DIR / name

    def read(suffix: str) -> np.ndarray:
        with rasterio.open(d / f"{name}_{suffix}.TIF") as ds:
            return ds.read(1)

    stac = json.loads((d / f"{name}_SR_stac.json").read_text())
    mtl = json.loads((d / f"{name}_MTL.json").read_text())["LANDSAT_METADATA_FILE"]
    return Scene(
        name,
        read("QA_PIXEL"),
        {b: read(f"SR_B{b}") for b in (2, 3, 4)},
        float(stac["properties"]["eo:cloud_cover"]),
        mtl,
    )


@pytest.mark.parametrize("name", _scenes())
def test_scene_scale_offset_match_mtl(name: str) -> None:
    """The registry's Landsat scale/offset are what USGS writes in each scene's MTL."""
    params = load_scene(name).mtl["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"]
    for band in (2, 3, 4):
        assert float(params[f"REFLECTANCE_MULT_BAND_{band}"]) == LANDSAT_C2_L2.scale
        assert float(params[f"REFLECTANCE_ADD_BAND_{band}"]) == LANDSAT_C2_L2.offset


@pytest.mark.parametrize("name", _scenes())
def test_scene_mask_consistent_with_cloud_cover(name: str) -> None:
    """QA_PIXEL decoding agrees with the scene's own ``eo:cloud_cover``.

    Among non-fill pixels the cloud bit (3) covered 99.94/54.67/81.06/100/100 % against cloud
    cover 99.94/54.65/81.02/100/100 (nearest-neighbour downsampling keeps the proportion), so a
    misread bit position shows up as tens of points; 3 points of tolerance leaves room for
    sampling. The default mask (cloud, dilated cloud, cirrus, shadow, snow) can only add to that.
    """
    s = load_scene(name)
    fill = (s.qa & 1) != 0
    valid = ~fill
    assert valid.sum() > 10_000
    cloud_fraction = float(((s.qa[valid] >> 3) & 1).mean())
    assert cloud_fraction == pytest.approx(s.cloud_cover / 100, abs=0.03)
    clear = MaskRule("qa_pixel").clear(s.qa)
    assert not clear[fill].any(), "fill pixels must never count as observations"
    masked_fraction = 1.0 - float(clear[valid].mean())
    assert masked_fraction >= cloud_fraction
    assert masked_fraction >= s.cloud_cover / 100 - 0.03


@pytest.mark.parametrize("name", _scenes())
def test_scene_reflectance_plausible(name: str) -> None:
    """Registry scale/offset on clear pixels (or all valid ones if none) stay in a sane range.

    Observed: at least 99.98 % of pixels within [-0.05, 1.6] in every band of every scene. Most
    scenes are fully clouded, so without clear pixels the check runs on every non-fill pixel.
    """
    s = load_scene(name)
    fill = (s.qa & 1) != 0
    clear = MaskRule("qa_pixel").clear(s.qa)
    lo, hi = PLAUSIBLE_REFLECTANCE
    for band, dn in s.sr.items():
        assert not ((dn == 0) & ~fill).any(), f"B{band}: SR nodata 0 on a valid QA pixel"
        refl = to_reflectance(dn, LANDSAT_C2_L2.scale, LANDSAT_C2_L2.offset, LANDSAT_C2_L2.nodata)
        use = clear & ~np.isnan(refl)
        if use.sum() < 100:
            use = ~fill & ~np.isnan(refl)
        values = refl[use]
        inside = float(((values >= lo) & (values <= hi)).mean())
        assert inside >= 0.99, f"B{band}: only {inside:.4f} of {values.size} pixels plausible"


def test_clear_land_reflectance_needs_the_offset() -> None:
    """A clear tropical scene's median red is ~0.05; without the -0.2 offset it would be ~0.25.

    Guards against a dropped offset, which the plausible-range check alone would not catch.
    """
    medians = {}
    for name in _scenes():
        s = load_scene(name)
        clear = MaskRule("qa_pixel").clear(s.qa)
        if clear.sum() >= 1000:
            refl = to_reflectance(s.sr[4], LANDSAT_C2_L2.scale, LANDSAT_C2_L2.offset, 0)
            medians[name] = float(np.nanmedian(refl[clear]))
    assert medians, "no scene with enough clear pixels"
    for name, median in medians.items():
        assert 0.0 < median < 0.15, (name, median)
