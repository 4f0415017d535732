"""Static STAC catalogs of what was archived (raw) and what was made (derived).

A catalog is ``{prefix}/catalog.json`` with one child collection per source collection, and
items grouped by partition: ``{collection}/{aoi}/{YYYY-MM}/{item}/{item}.json``. Replacing a
partition rewrites only that partition's items, the collection and the root (not the whole
tree), in an order that never leaves a dangling link: new items first, then the collection
and root that link them, then the files of items no longer linked. Every file is written
atomically and the whole update holds the catalog's lock.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.processing import ProcessingExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension, Statistics

from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.months import Month
from rgb_assets.core.stac.extent import widen
from rgb_assets.core.stac.properties import (
    AOI_PROP,
    CLEAR_FRACTION_PROP,
    MONTH_PROP,
    OBSERVATIONS_PROP,
)
from rgb_assets.core.stac.viewers import SCENES_PROP, add_renders, add_web_map_links
from rgb_assets.core.storage import layout
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store, stac_io

# Called under the catalog lock with (collection, store, collection key, aoi, month, items)
# before the collection is saved: e.g. :func:`rgb_assets.core.stac.viewers.summarize_collection`.
Summarize = Callable[[dict[str, Any], Store, str, str, Month, Sequence[pystac.Item]], None]

ZARR_MEDIA_TYPE = "application/vnd+zarr"
# The raster extension spells a NaN nodata as the string "nan" (JSON has no NaN).
NAN = "nan"
CREATOR = pystac.Provider(
    "rgb-assets", roles=[pystac.ProviderRole.PROCESSOR, pystac.ProviderRole.HOST]
)


@dataclass
class CatalogUpdate:
    """Result of replacing one partition in a catalog."""

    catalog: str
    collection: str
    item_keys: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _empty_collection(
    collection_id: str, title: str, description: str, license: str
) -> pystac.Collection:
    return pystac.Collection(
        id=collection_id,
        title=title,
        description=description,
        license=license,
        providers=[CREATOR],
        extent=pystac.Extent(
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent([[None, None]]),
        ),
    )


def _dump_collection(coll: dict[str, Any]) -> str:
    """Collection JSON, indented, with one link per line.

    ``json.dumps(indent=...)`` runs the pure-Python encoder: on a collection with thousands of
    item links it costs more than everything else in a partition update. Each link is encoded
    compactly by the C encoder instead.
    """
    body = {k: v for k, v in coll.items() if k != "links"}
    head = json.dumps(body, indent=2)
    links = ",\n    ".join(json.dumps(link) for link in coll.get("links", []))
    return f'{head[:-2]},\n  "links": [\n    {links}\n  ]\n}}\n'


class StaticCatalog:
    """A self-contained STAC catalog in a store, updated one partition at a time."""

    def __init__(self, store: Store, prefix: str, title: str, description: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.title = title
        self.description = description
        self.io = stac_io(store)

    @property
    def root_key(self) -> str:
        return layout.catalog_root(self.prefix)

    def partition_dir(self, collection_id: str, aoi: str, month: Month) -> str:
        paths = PartitionPaths(collection_id, aoi, month)
        return paths.catalog_partition(self.prefix, collection_id)

    def item_key(self, collection_id: str, aoi: str, month: Month, item_id: str) -> str:
        paths = PartitionPaths(collection_id, aoi, month)
        return paths.catalog_item(self.prefix, collection_id, item_id)

    def _open_root(self) -> pystac.Catalog:
        if self.store.exists(self.root_key):
            root = pystac.Catalog.from_file(self.store.uri(self.root_key), stac_io=self.io)
        else:
            root = pystac.Catalog(
                id=self.prefix.replace("/", "-"), title=self.title, description=self.description
            )
            root.set_self_href(self.store.uri(self.root_key))
        root.catalog_type = pystac.CatalogType.SELF_CONTAINED
        return root

    def replace_partition(
        self,
        template: pystac.Collection,
        aoi: str,
        month: Month,
        items: Sequence[pystac.Item],
        summarize: Summarize | None = None,
    ) -> CatalogUpdate:
        """Make the partition's items exactly ``items`` (an empty list unpublishes it)."""
        with self.store.lock(f"{self.prefix}/.lock"):
            return self._replace(template, aoi, month, items, summarize)

    def _replace(
        self,
        template: pystac.Collection,
        aoi: str,
        month: Month,
        items: Sequence[pystac.Item],
        summarize: Summarize | None = None,
    ) -> CatalogUpdate:
        """Rewrite the partition's items and the collection's links to them.

        Costs O(the partition's items) in pystac work: the collection is edited as JSON (its
        links are filtered by their relative href, never resolved one by one: pystac's
        ``get_absolute_href`` scans the owner's links for every link, quadratic in the number
        of partitions), and the root is written only when the collection is new.
        """
        coll_key = layout.catalog_collection(self.prefix, template.id)
        root_uri = self.store.uri(self.root_key)
        coll_uri = self.store.uri(coll_key)
        fresh = not self.store.exists(coll_key)
        if fresh:
            root = self._open_root()
            collection = template.clone()
            collection.clear_items()
            root.add_child(collection)
            collection.set_self_href(coll_uri)
            collection.save_object(include_self_link=False, stac_io=self.io)
            root.save_object(include_self_link=False, stac_io=self.io)
        coll = json.loads(self.store.read_text(coll_key))
        coll_dir = posixpath.dirname(coll_key)
        part_rel = f"./{posixpath.relpath(self.partition_dir(template.id, aoi, month), coll_dir)}/"
        keep, removed = [], []
        for link in coll["links"]:
            if link.get("rel") == "item" and link.get("href", "").startswith(part_rel):
                removed.append(posixpath.normpath(f"{coll_dir}/{link['href']}"))
            else:
                keep.append(link)
        # Items are linked to light stand-ins of the root and collection (same ids, titles and
        # hrefs, no links), so pystac writes their root/parent/collection links without
        # loading the catalog.
        root_stub = pystac.Catalog(
            id=self.prefix.replace("/", "-"),
            description="",
            title=json.loads(self.store.read_text(self.root_key)).get("title"),
        )
        root_stub.set_self_href(root_uri)
        root_stub.catalog_type = pystac.CatalogType.SELF_CONTAINED
        coll_stub = template.clone()
        coll_stub.clear_links()
        coll_stub.id = coll["id"]
        coll_stub.title = coll.get("title")
        coll_stub.set_self_href(coll_uri)
        coll_stub.set_root(root_stub)
        update = CatalogUpdate(self.root_key, template.id)
        for item in items:
            key = self.item_key(template.id, aoi, month, item.id)
            # Self href first: pystac re-bases relative asset hrefs on every self-href change,
            # and add_item gives the item its default location under the collection.
            item.set_self_href(self.store.uri(key))
            coll_stub.add_item(item)
            item.set_self_href(self.store.uri(key))
            # Keys become hrefs here, when STAC is written: relative to the item in the store
            # (pystac keeps hrefs on another host or scheme absolute).
            item.make_asset_hrefs_relative()
            keep.append(
                {
                    "rel": "item",
                    "href": f"./{posixpath.relpath(key, coll_dir)}",
                    "type": pystac.MediaType.GEOJSON.value,
                }
            )
            update.item_keys.append(key)
        coll["links"] = keep
        if items:
            linked = sum(1 for lk in keep if lk.get("rel") == "item")
            replaced_all = fresh or linked == len(items)
            current = None if replaced_all else pystac.Extent.from_dict(coll["extent"])
            coll["extent"] = widen(current, items).to_dict()
        for item in items:
            item.save_object(include_self_link=False, stac_io=self.io)
        if summarize is not None:
            summarize(coll, self.store, coll_key, aoi, month, items)
        self.store.write_text(coll_key, _dump_collection(coll))
        for key in removed:
            if key not in update.item_keys:
                self.store.delete(key.rsplit("/", 1)[0])
                update.removed.append(key)
        return update

    def _key_of(self, href: str) -> str:
        root = self.store.uri("x")[:-1]
        return href[len(root) :] if href.startswith(root) else href


# -- raw catalog ---------------------------------------------------------------------------
def raw_collection(
    spec: CollectionSpec, source_url: str, source_collection: str
) -> pystac.Collection:
    c = _empty_collection(
        spec.key,
        f"Archive: {spec.title}",
        f"Scenes of {source_collection!r} from {source_url} archived by rgb-assets "
        "(assets needed for RGB composites: red, green, blue and the mask band).",
        spec.license,
    )
    c.add_link(pystac.Link("via", source_url, title="Source STAC"))
    return c


def raw_catalog_item(archived: pystac.Item, paths: PartitionPaths) -> pystac.Item:
    """Catalog copy of an archived item: id unique per AOI (the clip differs per AOI)."""
    item = archived.full_copy()
    item.id = paths.raw_catalog_item_id(archived.id)
    item.set_root(None)
    item.set_parent(None)
    item.collection_id = None
    item.links = [lk for lk in item.links if lk.rel not in ("root", "parent", "collection", "self")]
    return item


# -- derived catalog ------------------------------------------------------------------------
def derived_collection(spec: CollectionSpec) -> pystac.Collection:
    c = _empty_collection(
        f"{spec.key}-monthly-rgb",
        f"Monthly median RGB composites: {spec.title}",
        "Cloud-free monthly per-pixel median surface reflectance (red, green, blue) with a "
        "clear-observation count, made by rgb-assets from archived scenes.",
        spec.license,
    )
    return c


def _statistics(band: dict[str, Any] | None) -> Statistics | None:
    if not band or "minimum" not in band:
        return None
    keys = ("minimum", "maximum", "mean", "stddev", "valid_percent")
    return Statistics.create(**{k: band[k] for k in keys})


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("rgb-assets", "odc-stac", "dask", "xarray", "rasterio"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


@dataclass(frozen=True)
class CompositeFiles:
    """Store keys and sizes of the products of one composite."""

    cog: str
    zarr: str
    visual: str
    thumbnail: str
    sizes: dict[str, int]
    checksums: dict[str, str]
    #: The product version folder the files are in.
    version: str = ""


def composite_item(
    *,
    spec: CollectionSpec,
    aoi: Aoi,
    month: Month,
    bands: Sequence[str],
    grid: dict[str, Any],
    files: CompositeFiles,
    item_id: str,
    item_key: str,
    raw_item_keys: Sequence[str],
    stats: dict[str, Any],
    constellation: str | None = None,
    public_url: str | None = None,
) -> pystac.Item:
    """The STAC item of one monthly composite, with proj, raster, eo, processing, file and
    render (plus web-map-links to the request service's tiles when ``public_url`` is given)."""
    end = month.end.timestamp() - 1e-3
    item = pystac.Item(
        id=item_id,
        geometry=aoi.geometry,
        bbox=list(aoi.bbox),
        datetime=None,
        start_datetime=month.start,
        end_datetime=datetime.fromtimestamp(end, tz=UTC),
        properties={
            "title": f"{spec.title} monthly median RGB, {aoi.name}, {month.key}",
            AOI_PROP: aoi.name,
            MONTH_PROP: month.key,
            OBSERVATIONS_PROP: stats["observations"],
            CLEAR_FRACTION_PROP: stats["clear_fraction"],
            SCENES_PROP: stats.get("items", stats["observations"]),
        },
    )
    if constellation:
        item.common_metadata.constellation = constellation
    item.common_metadata.gsd = grid["resolution"]
    item.common_metadata.created = datetime.now(UTC)

    proj = ProjectionExtension.ext(item, add_if_missing=True)
    if grid.get("epsg"):
        proj.code = f"EPSG:{grid['epsg']}"
    else:
        proj.wkt2 = grid["crs_wkt"]
    proj.shape = grid["shape"]
    proj.transform = grid["transform"]

    proc = ProcessingExtension.ext(item, add_if_missing=True)
    proc.level = "L3"
    recipe = stats.get("recipe") or {"method": "median"}
    proc.lineage = _lineage(recipe, stats["observations"], month.key, spec.mask_kind)
    if recipe.get("mask") or recipe.get("haze"):
        item.properties["rgb_assets:method"] = recipe["method"]
        item.properties["rgb_assets:mask_rule"] = recipe.get("mask", {})
        item.properties["rgb_assets:haze_rule"] = recipe.get("haze", {})
    proc.software = _versions()
    proc.datetime = datetime.now(UTC)

    def add(
        key: str, store_key: str, media_type: str, roles: list[str], title: str
    ) -> pystac.Asset:
        href = posixpath.relpath(store_key, posixpath.dirname(item_key))
        asset = pystac.Asset(href=href, media_type=media_type, roles=roles, title=title)
        item.add_asset(key, asset)
        if store_key in files.sizes:
            fe = FileExtension.ext(asset, add_if_missing=True)
            fe.size = files.sizes[store_key]
            if store_key in files.checksums:
                fe.checksum = files.checksums[store_key]
        return asset

    data = add(
        "data", files.cog, pystac.MediaType.COG, ["data"], "Median reflectance + clear count"
    )
    eo_bands = [
        Band.create(name=b, common_name=b, description=f"{b} median surface reflectance")
        for b in bands
    ]
    eo_bands.append(Band.create(name="clear_count", description="clear observations per pixel"))
    medoid = recipe.get("method") == "medoid"
    if medoid:
        eo_bands.append(
            Band.create(
                name="source_date",
                description="day of the medoid observation, days since 1970-01-01",
            )
        )
    EOExtension.ext(data, add_if_missing=True).bands = eo_bands
    raster_bands = [
        RasterBand.create(
            nodata=NAN,
            data_type=DataType.FLOAT32,
            unit="1",
            spatial_resolution=grid["resolution"],
            statistics=_statistics(stats["bands"].get(b)),
        )
        for b in bands
    ]
    for _ in range(2 if medoid else 1):
        raster_bands.append(
            RasterBand.create(
                nodata=NAN, data_type=DataType.FLOAT32, spatial_resolution=grid["resolution"]
            )
        )
    RasterExtension.ext(data, add_if_missing=True).bands = raster_bands
    visual = add(
        "visual",
        files.visual,
        pystac.MediaType.COG,
        ["visual"],
        "True colour, 8-bit, reflectance 0-0.3 stretched linearly to 1-255",
    )
    EOExtension.ext(visual, add_if_missing=True).bands = [
        Band.create(name=b, common_name=b) for b in bands
    ]
    add("thumbnail", files.thumbnail, pystac.MediaType.PNG, ["thumbnail"], "Thumbnail")
    add("zarr", files.zarr, ZARR_MEDIA_TYPE, ["data"], "Zarr store (v2, consolidated)")

    for raw_key in raw_item_keys:
        href = posixpath.relpath(raw_key, posixpath.dirname(item_key))
        item.add_link(pystac.Link("derived_from", href, pystac.MediaType.GEOJSON))
    add_renders(item, bands)
    if public_url:
        add_web_map_links(item, public_url, aoi.name, month)
    return item


def _lineage(recipe: dict[str, Any], observations: int, month: str, mask_kind: str) -> str:
    """Processing lineage: the method and the mask and haze rules that made the composite."""
    method = recipe.get("method", "median")
    what = {
        "median": "Per-pixel median",
        "medoid": "Per-pixel medoid (the observation closest to all others, its day in "
        "source_date)",
        "geomedian": "Per-pixel geometric median (geomad)",
    }.get(method, f"Per-pixel {method[1:]}th percentile")
    text = (
        f"{what} over {observations} observations of {month}, after masking with the "
        f"{mask_kind.upper()} band and scaling to surface reflectance."
    )
    mask = recipe.get("mask") or {}
    if mask:
        excluded = mask.get("scl_exclude") or mask.get("qa_flags")
        grown = mask.get("scl_cloud") or mask.get("qa_cloud")
        text += (
            f" Masked: {excluded}; cloud classes {grown} opened by {mask.get('opening', 0)} "
            f"and dilated by {mask.get('dilation', 0)} pixels (no data is never dilated)."
        )
    haze = recipe.get("haze") or {}
    if haze.get("index", "none") != "none":
        text += (
            f" Haze test: observations whose {haze['index']} index exceeds the pixel's "
            f"{haze['reference']} by more than {haze['margin']} rejected"
            + (
                f" (with >= {haze['min_obs']} observations; fewer: {haze['few']})."
                if haze["reference"] == "median"
                else "."
            )
        )
    elif haze:
        text += " No haze test (plain composite)."
    return text
