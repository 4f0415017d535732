"""The map viewer of ``rgb-assets serve``: ``/map``, its data, COG tiles and the store over HTTP.

- ``GET /map``: a Leaflet page (Leaflet from the ``xstatic-leaflet`` package, served here,
  never from a CDN) with the AOIs' outlines, a month slider showing each month's clear
  fraction and scene count, the visual composite as tiles, pixel values on click and a swipe
  compare of two months.
- ``GET /map/layers``: the AOIs (GeoJSON) and every published composite with its facts.
- ``/cog/...``: titiler-core's tiler (tiles, tilejson, point, info) over the composites' COGs in
  the store, local or ``s3://``, addressed by ``aoi``, ``month`` and ``asset`` (``visual``: the
  8-bit RGB COG; ``data``: reflectance + clear count).
- ``GET /store/{key}``: published files (composites, catalogs) over HTTP, so the derived
  catalog's relative hrefs resolve to HTTP for STAC Browser and other clients.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any, Literal

import xstatic.pkg.leaflet
from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

from rgb_assets.core.domain.collection_specs import CollectionSpec
from rgb_assets.core.domain.errors import InputError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.products.composite import read_product
from rgb_assets.core.products.web import store_url, tile_url
from rgb_assets.core.raster.compositing import COUNT_BAND
from rgb_assets.core.stac.catalog import derived_collection
from rgb_assets.core.storage.layout import DERIVED_CATALOG, PartitionPaths
from rgb_assets.resources.storage import StorageResource

STATIC = Path(__file__).parent / "static"
LEAFLET = Path(xstatic.pkg.leaflet.BASE_DIR)
# Only published products and catalogs are served (not requests, AOI inbox or locks).
SERVED_PREFIXES = ("composites/", "catalogs/")
CORS = {"Access-Control-Allow-Origin": "*"}
mimetypes.add_type("image/tiff; application=geotiff; profile=cloud-optimized", ".tif")
mimetypes.add_type("application/json", ".json")


class CompositeLayer(BaseModel):
    """One published composite as the viewer shows it."""

    aoi: str
    month: str
    clear_fraction: float
    scene_count: int
    bands: list[str]
    tiles: str
    thumbnail: str
    cog: str
    item: str | None


class Layers(BaseModel):
    """The AOIs' outlines and the composites, by AOI then month."""

    aois: dict[str, Any]
    composites: list[CompositeLayer]


def _safe_key(key: str) -> str:
    parts = key.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts) or not key.startswith(SERVED_PREFIXES):
        raise HTTPException(404, f"{key!r} not found")
    return "/".join(parts)


def install_viewer(app: FastAPI, storage: StorageResource, spec: CollectionSpec) -> None:
    """Add the viewer's routes, and titiler's error answers (a tile outside the COG: 404)."""
    app.include_router(viewer_router(storage, spec))
    add_exception_handlers(app, DEFAULT_STATUS_CODES)


def viewer_router(storage: StorageResource, spec: CollectionSpec) -> APIRouter:
    """``/map``, ``/map/layers``, ``/map/static/*``, ``/cog/*`` and ``/store/*``."""
    router = APIRouter()
    store = storage.store()
    cid = derived_collection(spec).id

    def cog_path(
        aoi: Annotated[str, Query(description="AOI name")],
        month: Annotated[str, Query(description="Month, YYYY-MM")],
        asset: Annotated[
            Literal["visual", "data"],
            Query(description="visual: 8-bit RGB COG; data: reflectance + clear count COG"),
        ] = "visual",
    ) -> str:
        """The COG of one composite (404 when that AOI x month has none)."""
        try:
            m = Month.parse(month)
            product = read_product(store, PartitionPaths(spec.key, aoi, m))
        except InputError as e:
            raise HTTPException(422, f"{e.field}: {e.problem}") from None
        if product is None:
            raise HTTPException(404, f"no composite for {aoi} {m.key}")
        files = product[1]
        return store.uri(files.cog if asset == "data" else files.visual)

    tiler = TilerFactory(
        path_dependency=cog_path,
        environment_dependency=storage.gdal_options,
        router_prefix="/cog",
        add_preview=False,
        add_part=False,
        add_viewer=False,
    )
    router.include_router(tiler.router, prefix="/cog", tags=["map tiles"])

    @router.get("/map", response_class=HTMLResponse, tags=["map viewer"])
    def map_page() -> HTMLResponse:
        """The web map of the derived catalog."""
        return HTMLResponse((STATIC / "map.html").read_text())

    @router.get("/map/static/{name:path}", include_in_schema=False)
    def map_static(name: str) -> FileResponse:
        folder, _, rest = name.partition("/")
        base = {"leaflet": LEAFLET, "app": STATIC}.get(folder)
        path = (base / rest).resolve() if base else None
        if path is None or not path.is_file() or not path.is_relative_to(base.resolve()):
            raise HTTPException(404, f"{name} not found")
        return FileResponse(path)

    @router.get("/map/layers", response_model=Layers, tags=["map viewer"])
    def layers() -> Layers:
        """Every AOI's outline and every published composite (clear fraction, scene count,
        tile URL template); URLs are relative to this service."""
        registry = storage.aois()
        features, composites = [], []
        for aoi in registry.list():
            features.append(
                {"type": "Feature", "properties": {"name": aoi.name}, "geometry": aoi.geometry}
            )
            for month_key in sorted(store.listdir(f"composites/{spec.key}/{aoi.name}")):
                try:
                    month = Month.parse(month_key)
                except InputError:
                    continue
                paths = PartitionPaths(spec.key, aoi.name, month)
                published = read_product(store, paths)
                if published is None:
                    continue
                result, files = published
                item_key = paths.catalog_item(DERIVED_CATALOG, cid, paths.basename)
                composites.append(
                    CompositeLayer(
                        aoi=aoi.name,
                        month=month.key,
                        clear_fraction=float(result.stats.get("clear_fraction", 0.0)),
                        scene_count=int(result.stats.get("items", len(result.raw_item_ids))),
                        bands=[*result.bands, COUNT_BAND],
                        tiles=tile_url("", aoi.name, month),
                        thumbnail=store_url("", files.thumbnail),
                        cog=store_url("", files.cog),
                        item=store_url("", item_key) if store.exists(item_key) else None,
                    )
                )
        return Layers(
            aois={"type": "FeatureCollection", "features": features}, composites=composites
        )

    @router.get("/store/{key:path}", tags=["store"])
    def stored_file(key: str) -> Response:
        """A published file (composite product or catalog JSON) from the store."""
        key = _safe_key(key)
        media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        if store.is_local:
            path = store.local_path(key)
            if not path.is_file():
                raise HTTPException(404, f"{key!r} not found")
            return FileResponse(path, media_type=media_type, headers=CORS)
        if not store.exists(key):
            raise HTTPException(404, f"{key!r} not found")
        return Response(store.read_bytes(key), media_type=media_type, headers=CORS)

    return router
