"""The registry of supported collections and STAC providers, and what differs between them.

Everything the pipeline needs to know about a collection lives here: which asset holds each
band on each provider, how the mask band is read, scale/offset when items do not carry them,
nodata and native resolution. :func:`resolve_item` turns any provider's item into the same
:class:`ResolvedItem`, so no other module looks at provider-specific asset keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pystac

from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.stac.properties import MODE_PROP

EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"

MaskKind = Literal["scl", "qa_pixel"]
RGB = ("red", "green", "blue")


@dataclass(frozen=True)
class Provider:
    """A public STAC API and the collection ids it uses for our collections."""

    key: str
    url: str
    collection_ids: dict[str, str]
    sign_hrefs: bool = False


PROVIDERS: dict[str, Provider] = {
    "earth-search": Provider(
        "earth-search",
        EARTH_SEARCH_URL,
        {"sentinel-2-l2a": "sentinel-2-l2a", "landsat-c2-l2": "landsat-c2-l2"},
    ),
    "planetary-computer": Provider(
        "planetary-computer",
        PLANETARY_COMPUTER_URL,
        {"sentinel-2-l2a": "sentinel-2-l2a", "landsat-c2-l2": "landsat-c2-l2"},
        sign_hrefs=True,
    ),
}


def provider_for_url(url: str) -> Provider | None:
    """The known provider serving ``url``, if any (used to pick collection ids and signing)."""
    norm = url.rstrip("/")
    for p in PROVIDERS.values():
        if norm == p.url or norm.startswith(p.url.rsplit("/", 1)[0]):
            return p
    return None


@dataclass(frozen=True)
class CollectionSpec:
    """What the pipeline needs to know about one collection, across providers."""

    key: str
    title: str
    asset_keys: dict[str, tuple[str, ...]]
    mask_kind: MaskKind
    resolution: float
    nodata: float
    scale: float
    offset: float
    platforms: tuple[str, ...] = ()
    extra_mask_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    license: str = "proprietary"

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(k for k in self.asset_keys if k != "mask")


SENTINEL2_L2A = CollectionSpec(
    key="sentinel-2-l2a",
    title="Sentinel-2 Level-2A",
    asset_keys={
        "red": ("red", "B04", "B04_10m"),
        "green": ("green", "B03", "B03_10m"),
        "blue": ("blue", "B02", "B02_10m"),
        "mask": ("scl", "SCL", "SCL_20m"),
    },
    mask_kind="scl",
    resolution=10.0,
    nodata=0,
    scale=1e-4,
    offset=0.0,
)

LANDSAT_C2_L2 = CollectionSpec(
    key="landsat-c2-l2",
    title="Landsat Collection 2 Level-2 (Landsat 8/9 OLI)",
    asset_keys={
        "red": ("red", "SR_B4", "sr_b4"),
        "green": ("green", "SR_B3", "sr_b3"),
        "blue": ("blue", "SR_B2", "sr_b2"),
        "mask": ("qa_pixel", "QA_PIXEL", "qa_pixel_bitmask"),
    },
    mask_kind="qa_pixel",
    resolution=30.0,
    nodata=0,
    scale=2.75e-5,
    offset=-0.2,
    platforms=("landsat-8", "landsat-9"),
    extra_mask_keys={"radsat": ("qa_radsat", "QA_RADSAT")},
)

COLLECTIONS: dict[str, CollectionSpec] = {
    SENTINEL2_L2A.key: SENTINEL2_L2A,
    LANDSAT_C2_L2.key: LANDSAT_C2_L2,
}
# Provider-specific collection ids that mean one of ours.
ALIASES = {"landsat-8-c2-l2": "landsat-c2-l2", "sentinel-s2-l2a-cogs": "sentinel-2-l2a"}


def get_collection(key: str, field: str = "collection") -> CollectionSpec:
    spec = COLLECTIONS.get(ALIASES.get(key, key))
    if spec is None:
        raise InputError(
            field, f"{key!r} is not a supported collection (supported: {', '.join(COLLECTIONS)})"
        )
    return spec


@dataclass(frozen=True)
class BandAsset:
    """One asset resolved to what loading needs: where, and how DN become reflectance."""

    key: str
    href: str
    nodata: float | None
    scale: float = 1.0
    offset: float = 0.0
    data_type: str | None = None


@dataclass(frozen=True)
class ResolvedItem:
    """A source item reduced to the assets and radiometry the composite needs."""

    item: pystac.Item
    bands: dict[str, BandAsset]
    mask: BandAsset
    extra_masks: dict[str, BandAsset]
    epsg: int | None
    processing_baseline: str | None

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def datetime(self) -> datetime:
        return self.item.datetime or pystac.utils.str_to_datetime(
            self.item.properties["start_datetime"]
        )

    @property
    def asset_keys(self) -> dict[str, str]:
        """Role name ('red', 'mask', 'radsat', ...) → asset key in the item."""
        out = {name: b.key for name, b in self.bands.items()}
        out["mask"] = self.mask.key
        out.update({name: b.key for name, b in self.extra_masks.items()})
        return out


class MissingAssetError(InputError):
    """An item lacks an asset the composite needs; the item is skipped and the skip recorded."""

    def __init__(self, item_id: str, band: str, tried: tuple[str, ...]) -> None:
        self.item_id = item_id
        self.band = band
        super().__init__(
            f"item {item_id}", f"has no {band!r} asset (looked for keys {', '.join(tried)})"
        )


def _common_name(asset: pystac.Asset) -> set[str]:
    names: set[str] = set()
    for key in ("eo:bands", "bands"):
        for b in asset.extra_fields.get(key) or []:
            if isinstance(b, dict):
                for n in (b.get("common_name"), b.get("eo:common_name")):
                    if n:
                        names.add(n)
    return names


def _find_asset(item: pystac.Item, band: str, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if k in item.assets:
            return k
    if band in RGB:
        for k, a in item.assets.items():
            # Single-band assets only: a true-colour 'visual' asset lists red, green and blue.
            if _common_name(a) == {band} and not k.endswith(("-jp2", "_jp2")):
                return k
    return None


def _raster_band(asset: pystac.Asset) -> dict[str, Any]:
    """First band's raster fields, from STAC 1.0 ``raster:bands`` or STAC 1.1 asset/bands."""
    fields: dict[str, Any] = {}
    rb = asset.extra_fields.get("raster:bands")
    if isinstance(rb, list) and rb and isinstance(rb[0], dict):
        fields.update(rb[0])
    for b in asset.extra_fields.get("bands") or []:
        if isinstance(b, dict):
            for k in ("nodata", "data_type", "scale", "offset"):
                if k in b:
                    fields.setdefault(k, b[k])
            break
    for k in ("nodata", "data_type", "raster:scale", "raster:offset", "scale", "offset"):
        if k in asset.extra_fields:
            fields.setdefault(k.removeprefix("raster:"), asset.extra_fields[k])
    return fields


_BASELINE_IN_ID = re.compile(r"_N(\d{2})(\d{2})_")


def processing_baseline(item: pystac.Item) -> str | None:
    """Sentinel-2 processing baseline ('04.00') from the properties or the product id."""
    props = item.properties
    for k in ("s2:processing_baseline", "processing:version"):
        v = props.get(k)
        if isinstance(v, str) and re.fullmatch(r"\d{2}\.\d{2}", v):
            return v
    for text in (props.get("s2:product_uri"), item.id):
        m = _BASELINE_IN_ID.search(str(text or ""))
        if m:
            return f"{m.group(1)}.{m.group(2)}"
    return None


def item_epsg(item: pystac.Item, asset: pystac.Asset | None = None) -> int | None:
    for fields in ((asset.extra_fields if asset else {}), item.properties):
        if fields.get("proj:epsg"):
            return int(fields["proj:epsg"])
        code = fields.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            return int(code.split(":", 1)[1])
    return None


def default_offset(spec: CollectionSpec, baseline: str | None) -> float:
    """Registry offset; Sentinel-2 baseline >= 04.00 shifts DN by +1000 (offset -0.1)."""
    if spec.key == SENTINEL2_L2A.key and baseline and baseline >= "04.00":
        return -1000 * spec.scale
    return spec.offset


def resolve_item(item: pystac.Item, spec: CollectionSpec) -> ResolvedItem:
    """Resolve red/green/blue/mask assets, scale, offset and nodata for any provider's item.

    Scale/offset come from the asset's raster metadata when present, otherwise from the
    registry (with the Sentinel-2 baseline rule). Raises :class:`MissingAssetError`.
    """
    baseline = processing_baseline(item) if spec.mask_kind == "scl" else None
    archived = MODE_PROP in item.properties
    found: dict[str, BandAsset] = {}
    for band, keys in spec.asset_keys.items():
        # Our archived items are keyed by role, with the radiometry resolved at archive time.
        keys = (band,) if archived else keys
        key = _find_asset(item, band, keys)
        if key is None:
            raise MissingAssetError(item.id, band, keys)
        asset = item.assets[key]
        rb = _raster_band(asset)
        is_mask = band == "mask"
        found[band] = BandAsset(
            key=key,
            href=asset.href,
            nodata=rb.get(
                "nodata", None if is_mask and spec.mask_kind == "qa_pixel" else spec.nodata
            ),
            scale=1.0 if is_mask else float(rb.get("scale", spec.scale)),
            offset=0.0 if is_mask else float(rb.get("offset", default_offset(spec, baseline))),
            data_type=rb.get("data_type"),
        )
    extras: dict[str, BandAsset] = {}
    for name, keys in spec.extra_mask_keys.items():
        key = _find_asset(item, name, (name,) if archived else keys)
        if key is not None:
            asset = item.assets[key]
            extras[name] = BandAsset(
                key, asset.href, None, data_type=_raster_band(asset).get("data_type")
            )
    mask = found.pop("mask")
    return ResolvedItem(
        item=item,
        bands=found,
        mask=mask,
        extra_masks=extras,
        epsg=item_epsg(item, item.assets[found["red"].key]),
        processing_baseline=baseline,
    )
