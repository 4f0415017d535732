"""Archive the assets a composite needs into the raw store, checksummed.

Default mode ``clip``: read the AOI's window of each asset in the scene's *native* grid (no
resampling; dtype, values and nodata unchanged) and write it as a COG: the source's own encoded
tiles around the window when it is a tiled GeoTIFF (``tilecopy``), else the window decoded and
encoded again in lossless ZSTD with overviews. Mode ``full`` copies the
whole asset byte for byte and verifies the source's ``file:checksum``/``file:size`` when the
item declares them. Clip mode never reads the whole file, so it cannot verify a checksum, but
it checks a declared ``file:size`` against the object's size (a stat or HTTP HEAD) before
reading. Either way we record our own sha2-256 multihash and size in the archived item, report
per asset how far the source was verified, and a re-run skips assets already archived and
intact. Nothing is written to the store until every asset of the item has been read and checked.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import fsspec
import pystac
import rasterio
import rasterio.shutil
from affine import Affine
from pystac.extensions.file import FileExtension
from pystac.extensions.raster import RasterBand, RasterExtension
from rasterio.enums import MaskFlags, Resampling
from rasterio.io import MemoryFile
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from shapely.geometry import box, mapping, shape

from rgb_assets.core.archive import tilecopy
from rgb_assets.core.archive.hrefs import check_raster, confine_href
from rgb_assets.core.domain.aoi import Aoi
from rgb_assets.core.domain.collection_specs import ResolvedItem
from rgb_assets.core.domain.errors import ChecksumError, RgbAssetsError
from rgb_assets.core.domain.months import Month
from rgb_assets.core.raster.writers import overview_factors
from rgb_assets.core.stac.properties import AOI_PROP, CLIP_PROP, MODE_PROP, MONTH_PROP
from rgb_assets.core.storage import checksums
from rgb_assets.core.storage.layout import PartitionPaths
from rgb_assets.core.storage.store import Store, staging_folder

ArchiveMode = Literal["clip", "full"]
# How far a source asset was checked against its item: whole-content checksum, size only, or
# neither (the item declares nothing we can check, or an algorithm we cannot compute).
Verification = Literal["checksum", "size", "unverifiable"]


class AssetReadError(RgbAssetsError):
    """Reading a source asset failed (a download cut short, a reset connection): the item is
    not archived, nothing of it is stored, and the error names the item, asset and href. Not
    retried here: the next run of the partition reads it again."""

    def __init__(self, item: str, asset: str, href: str, error: BaseException) -> None:
        cause = error.__cause__ or error.__context__
        detail = f"{type(error).__name__}: {error}"
        if cause is not None and str(cause) not in detail:
            detail += f" ({type(cause).__name__}: {cause})"
        super().__init__(f"item {item!r}, asset {asset!r} ({href}): read failed: {detail}")


@dataclass
class IngestOutcome:
    """What happened to one source item."""

    source_id: str
    status: Literal["archived", "intact", "outside"]
    item: pystac.Item | None = None
    bytes_written: int = 0
    # Asset key → how the source asset was verified (empty when nothing was read).
    source_verification: dict[str, Verification] = field(default_factory=dict)


def _native_window(src: rasterio.io.DatasetReader, bbox: tuple[float, ...]) -> Window | None:
    """Whole-pixel window of ``src`` covering the lon/lat ``bbox``; None when they miss."""
    left, bottom, right, top = transform_bounds("EPSG:4326", src.crs, *bbox, densify_pts=21)
    w = from_bounds(left, bottom, right, top, transform=src.transform)
    eps = 1e-6
    col0 = max(0, math.floor(w.col_off + eps))
    row0 = max(0, math.floor(w.row_off + eps))
    col1 = min(src.width, math.ceil(w.col_off + w.width - eps))
    row1 = min(src.height, math.ceil(w.row_off + w.height - eps))
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def _not_kept(href: str) -> dict[str, str]:
    """GDAL options that keep no copy of a remote ``href`` once it is closed.

    GDAL's ``/vsicurl/`` cache outlives the dataset: a download cut short would be served
    again, truncated, to every later read of that href in the process (a long-lived Dask
    worker), so its scenes could never be archived until the worker restarts.
    """
    scheme, _, rest = href.partition("://")
    if scheme in ("http", "https"):
        return {"CPL_VSIL_CURL_NON_CACHED": f"/vsicurl/{href}"}
    if scheme == "s3":
        return {"CPL_VSIL_CURL_NON_CACHED": f"/vsis3/{rest}"}
    return {}


#: GDAL COG driver options of archived clips. Lossless ZSTD (level 1, horizontal predictor)
#: encodes a 2048^2 uint16 clip in 0.11 s against 0.24 s for rio-cogeo's DEFLATE profile, at
#: about the same size; GDAL (>= 2.3) and so rasterio, odc-stac and titiler read it.
ARCHIVE_COG = {
    "COMPRESS": "ZSTD",
    "LEVEL": "1",
    "PREDICTOR": "YES",
    "BLOCKSIZE": "512",
    "OVERVIEW_RESAMPLING": "NEAREST",
}


#: Largest growth in pixels (tile window / clip window) for which a clip copies the source's
#: tiles (``tilecopy``): whole tiles cost storage, decoding and re-encoding cost CPU (5-6x the
#: copy's). The copy has no overviews, which add a third to a decoded clip, so 3x the pixels is
#: at most about 2.25x the storage. The window of a 2048^2 AOI (2105^2 px and more: the AOI's
#: lon/lat bounding box) grows 1.5-2.1x on 512 px tiles, 2.1-3.8x on 1024 px tiles (Sentinel-2's
#: COGs); a 100^2 AOI 26-105x on 512 px tiles, so it is decoded.
TILE_COPY_MAX_GROWTH = 3.0
#: Smallest clip (pixels) that copies tiles: decoding a smaller one costs little (0.03 s of CPU
#: at 1024^2), and a copy reads a remote source's header a second time (GDAL, then the copy).
TILE_COPY_MIN_PIXELS = 1024 * 1024


def clip_to_cog(href: str, bbox: tuple[float, ...], dest: Path) -> dict[str, Any] | None:
    """Write the AOI window of ``href`` to ``dest`` as a COG; returns its grid, or None.

    A window of at least ``TILE_COPY_MIN_PIXELS`` of a tiled single-band GeoTIFF, whose whole
    tiles hold at most ``TILE_COPY_MAX_GROWTH`` times its pixels, is copied tile by tile,
    encoded bytes as they are (``tilecopy``); any other is read and encoded again."""
    with rasterio.Env(**_not_kept(href)), rasterio.open(href) as src:
        win = _native_window(src, bbox)
        if win is None:
            return None
        copied = _copy_tiles(src, href, win, dest)
        if copied is not None:
            return _grid(*copied)
        data = src.read(window=win)
        profile = {
            "driver": "GTiff",
            "height": int(win.height),
            "width": int(win.width),
            "count": src.count,
            "dtype": src.dtypes[0],
            "crs": src.crs,
            "transform": src.window_transform(win),
            "nodata": src.nodata,
        }
        tags = src.tags()
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data)
            tmp.update_tags(**tags)
            # Nearest overviews built here in memory, the way ``gdaladdo`` does: the COG driver
            # then only compresses them (0.07 s per 2105^2 clip, against 0.14 s when it builds
            # them itself through a temporary file). The levels are the driver's; where a side
            # does not divide by a level's factor, the level has gdaladdo's rounded-up size
            # (1053 rows for 2105, where the driver makes 1052).
            factors = overview_factors(
                int(win.width), int(win.height), int(ARCHIVE_COG["BLOCKSIZE"])
            )
            if factors:
                tmp.build_overviews(factors, Resampling.nearest)
        with mem.open() as tmp:
            rasterio.shutil.copy(tmp, str(dest), driver="COG", **ARCHIVE_COG)
    return _grid(profile["transform"], int(win.height), int(win.width))


def _grid(transform: Affine, height: int, width: int) -> dict[str, Any]:
    t = transform
    return {"proj:shape": [height, width], "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f]}


def _copy_tiles(
    src: rasterio.io.DatasetReader, href: str, win: Window, dest: Path
) -> tuple[Affine, int, int] | None:
    """Copy the tiles around ``win`` when the source qualifies (see :func:`clip_to_cog`);
    returns the copy's transform and shape, or None when it does not qualify."""
    scheme = href.split("://", 1)[0] if "://" in href else ""
    if scheme not in ("", "file", "http", "https") or src.driver != "GTiff" or src.count != 1:
        return None
    if MaskFlags.per_dataset in src.mask_flag_enums[0] or src.profile.get("tiled") is not True:
        return None
    if win.width * win.height < TILE_COPY_MIN_PIXELS:
        return None
    th, tw = src.block_shapes[0]
    tiles = tilecopy.widen_to_tiles(win, (tw, th), (src.width, src.height))
    if tilecopy.growth(win, tiles) > TILE_COPY_MAX_GROWTH:
        return None
    if tilecopy.copy_tiles(href, tiles, dest) is not None:
        return None
    expected = src.window_transform(tiles.window)
    with rasterio.open(dest) as copy:
        found = (copy.transform, copy.crs, copy.shape, copy.dtypes[0], _nodata(copy.nodata))
        # One tile decoded: the copy's codec and predictor tags read the source's bytes.
        copy.read(1, window=Window(0, 0, 1, 1))
    wanted = (expected, src.crs, (tiles.height, tiles.width), src.dtypes[0], _nodata(src.nodata))
    if found != wanted:
        raise RgbAssetsError(f"{href}: tile copy does not match its source: {found} != {wanted}")
    return expected, tiles.height, tiles.width


def _nodata(value: float | None) -> float | str | None:
    """A nodata value that compares equal to itself (NaN as the string "nan")."""
    return "nan" if value is not None and math.isnan(value) else value


def _declared_size(declared: pystac.Asset) -> int | None:
    size = declared.extra_fields.get("file:size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def check_source_size(href: str, asset_key: str, declared: pystac.Asset) -> Verification:
    """Compare a declared ``file:size`` with the object's size without reading its content.

    Returns "size" when it matches and "unverifiable" when the item declares no size or the
    server does not report one; raises :class:`ChecksumError` naming the asset on a mismatch.
    """
    expected = _declared_size(declared)
    if expected is None:
        return "unverifiable"
    try:
        fs, path = fsspec.core.url_to_fs(href)
        actual = fs.size(path)
    except Exception:  # no size from this server/protocol: reading will report real failures
        return "unverifiable"
    if actual is None:
        return "unverifiable"
    if int(actual) != expected:
        raise ChecksumError(
            f"asset {asset_key!r} ({href}): size {int(actual)} != declared file:size {expected}"
        )
    return "size"


def check_declared_checksum(declared: object, asset_key: str, href: str) -> None:
    """A declared ``file:checksum`` must be a multihash: garbage is an error, not "unverifiable"
    (only a well-formed multihash of an algorithm we cannot compute is)."""
    name = f"asset {asset_key!r} ({href})"
    if not isinstance(declared, str):
        raise ChecksumError(f"{name}: file:checksum {declared!r} is not a string")
    try:
        checksums.parse_multihash(declared)
    except checksums.MalformedChecksum as e:
        raise ChecksumError(f"{name}: file:checksum {e}") from None
    except checksums.UnsupportedChecksum:
        pass


def copy_whole(href: str, dest: Path, declared: pystac.Asset, asset_key: str) -> Verification:
    """Copy the whole object and verify the declared size and checksum; returns how far."""
    name = f"asset {asset_key!r} ({href})"
    with fsspec.open(href, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, length=1 << 20)
    size = _declared_size(declared)
    if size is not None and dest.stat().st_size != size:
        raise ChecksumError(f"{name}: size {dest.stat().st_size} != declared file:size {size}")
    verified: Verification = "size" if size is not None else "unverifiable"
    declared_sum = declared.extra_fields.get("file:checksum")
    if declared_sum is not None:
        check_declared_checksum(declared_sum, asset_key, href)
        try:
            ok = checksums.matches(dest, declared_sum)
        except checksums.UnsupportedChecksum:
            return verified  # an algorithm we cannot compute: recorded as not checksum-verified
        if not ok:
            raise ChecksumError(f"{name}: content does not match declared file:checksum")
        return "checksum"
    return verified


def _intact(store: Store, key: str, aoi: Aoi, mode: ArchiveMode) -> pystac.Item | None:
    """The archived item if it and every asset it lists are present with matching checksums."""
    if not store.exists(key):
        return None
    try:
        item = pystac.Item.from_dict(json.loads(store.read_text(key)))
    except Exception:
        return None
    if item.properties.get(MODE_PROP) != mode or item.properties.get(CLIP_PROP) != list(aoi.bbox):
        return None
    folder = key.rsplit("/", 1)[0]
    for asset in item.assets.values():
        name = Path(asset.href).name
        akey = f"{folder}/{name}"
        expected = asset.extra_fields.get("file:checksum")
        if not store.exists(akey) or not expected:
            return None
        if store.size(akey) != asset.extra_fields.get("file:size"):
            return None
        if checksums.to_multihash(store.sha256(akey)) != expected:
            return None
    return item


def archived_item(
    r: ResolvedItem,
    aoi: Aoi,
    month: Month,
    mode: ArchiveMode,
    assets: dict[str, tuple[str, dict[str, Any]]],
) -> pystac.Item:
    """The archive's copy of a source item: its properties and extensions, only the archived
    assets keyed by role (``red``, ``green``, ``blue``, ``mask``, ``radsat``; relative hrefs,
    our size and checksum, native grid of the clip), a ``via`` link back to the source item,
    and the resolved scale/offset/nodata in ``raster:bands``. Items are resolved once, here:
    odc-stac loads the archived items as they are, and ``resolve_item`` reads them back
    without any provider rule. ``assets`` maps role -> (source key, file name, file info)."""
    src = r.item
    item = pystac.Item.from_dict(src.to_dict(include_self_link=False, transform_hrefs=False))
    item.clear_links()
    # The archive's copy belongs to no collection of ours: a ``collection`` field without its
    # link is invalid STAC. The source collection stays reachable through the ``via`` link.
    item.collection_id = None
    source_href = src.get_self_href()
    if source_href:
        item.add_link(pystac.Link("via", source_href, pystac.MediaType.GEOJSON, "Source item"))
    clip = box(*aoi.bbox)
    if mode == "clip" and item.geometry:
        footprint = shape(item.geometry).intersection(clip)
        if not footprint.is_empty:
            item.geometry = mapping(footprint)
            item.bbox = list(footprint.bounds)
        for k in ("proj:shape", "proj:transform", "proj:bbox", "proj:centroid"):
            item.properties.pop(k, None)
    resolved = r.bands | {"mask": r.mask} | r.extra_masks
    item.assets = {}
    for role, (key, filename, info) in assets.items():
        src_asset = src.assets[key]
        extra = {
            k: v
            for k, v in src_asset.extra_fields.items()
            if not k.startswith(("file:", "alternate", "storage:", "raster:"))
            and k not in ("bands", "nodata", "data_type", "scale", "offset")
        }
        if mode == "clip":
            extra.update({k: v for k, v in info.items() if k.startswith("proj:")})
            extra.pop("proj:bbox", None)
        asset = pystac.Asset(
            href=f"./{filename}",
            title=src_asset.title,
            media_type=pystac.MediaType.COG if mode == "clip" else src_asset.media_type,
            roles=src_asset.roles,
            extra_fields=extra,
        )
        item.add_asset(role, asset)
        fe = FileExtension.ext(asset, add_if_missing=True)
        fe.size = info["file:size"]
        fe.checksum = info["file:checksum"]
        b = resolved[role]
        band = RasterBand.create(nodata=b.nodata, data_type=b.data_type)
        if role in r.bands:
            band.scale, band.offset = b.scale, b.offset
        RasterExtension.ext(asset, add_if_missing=True).bands = [band]
    item.properties.update(
        {
            AOI_PROP: aoi.name,
            MONTH_PROP: month.key,
            MODE_PROP: mode,
            CLIP_PROP: list(aoi.bbox),
            "updated": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
    )
    return item


def ingest_item(
    r: ResolvedItem,
    aoi: Aoi,
    month: Month,
    store: Store,
    collection: str,
    *,
    mode: ArchiveMode = "clip",
    read_item: pystac.Item | None = None,
    read_roots: tuple[str, ...] = (),
) -> IngestOutcome:
    """Archive one item's red, green, blue and mask assets (plus QA_RADSAT when present).

    ``read_item`` is the copy to read pixels from (e.g. with signed hrefs); the archived item
    always records the unsigned source. Hrefs are read only from remote URLs and local files
    under ``read_roots``, and whole copies must be rasters of the media type the item claims;
    otherwise :class:`~rgb_assets.core.archive.hrefs.RefusedAsset` is raised before anything
    is written to the store.
    """
    paths = PartitionPaths(collection, aoi.name, month)
    folder, item_key = paths.scene_dir(r.id), paths.scene_item(r.id)
    existing = _intact(store, item_key, aoi, mode)
    if existing is not None:
        return IngestOutcome(r.id, "intact", existing)
    reader = read_item or r.item
    written: dict[str, tuple[str, str, dict[str, Any]]] = {}
    checks: dict[str, Verification] = {}
    total = 0
    with staging_folder("rgb-ingest-") as tmpdir:
        staged: list[tuple[Path, str]] = []
        for role, key in r.asset_keys.items():
            raw_href = reader.assets[key].get_absolute_href() or reader.assets[key].href
            href = confine_href(raw_href, read_roots, key)
            suffix = ".tif" if mode == "clip" else Path(href.split("?")[0]).suffix or ".bin"
            filename = f"{role}{suffix}"
            dest = Path(tmpdir) / filename
            try:
                if mode == "clip":
                    declared_sum = r.item.assets[key].extra_fields.get("file:checksum")
                    if declared_sum is not None:
                        check_declared_checksum(declared_sum, key, href)
                    checks[key] = check_source_size(href, key, r.item.assets[key])
                    info = clip_to_cog(href, aoi.bbox, dest)
                    if info is None:
                        return IngestOutcome(r.id, "outside", source_verification=checks)
                else:
                    info = {}
                    checks[key] = copy_whole(href, dest, r.item.assets[key], key)
                    check_raster(dest, r.item.assets[key].media_type, key, raw_href)
            except RgbAssetsError:
                raise
            except Exception as e:  # a cut download, a reset connection, a vanished file
                raise AssetReadError(r.id, key, href, e) from e
            info["file:size"] = dest.stat().st_size
            info["file:checksum"] = checksums.multihash_sha256(dest)
            total += info["file:size"]
            written[role] = (key, filename, info)
            staged.append((dest, f"{folder}/{filename}"))
        for local, key in staged:
            store.put_file(local, key)
    item = archived_item(r, aoi, month, mode, written)
    store.write_text(item_key, json.dumps(item.to_dict(include_self_link=False), indent=1))
    return IngestOutcome(r.id, "archived", item, total, checks)
