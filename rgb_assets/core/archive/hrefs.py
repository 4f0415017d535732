"""Which asset hrefs the archive may read: remote URLs and files under configured local roots.

A STAC item is input from someone else. Without this check an item whose asset href is
``file:///etc/passwd``, ``/etc/passwd`` or ``../../etc/passwd`` had that file copied into the
store (``full`` mode) or opened by GDAL (``clip`` mode). Only ``http(s)://`` and ``s3://`` URLs
and local files inside an allowed root (after resolving ``..`` and symlinks) are read; anything
else refuses the item with the reason, and nothing of it is archived.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import rasterio
from rasterio.errors import RasterioIOError

from rgb_assets.core.domain.errors import RgbAssetsError

REMOTE_SCHEMES = ("http", "https", "s3")
#: Media types an archived asset may claim, and the GDAL drivers whose bytes match them.
MEDIA_DRIVERS = {
    "image/tiff": ("GTiff", "COG"),
    "image/jp2": ("JP2OpenJPEG", "JP2KAK", "JP2ECW", "JPEG2000"),
    "image/png": ("PNG",),
    "image/jpeg": ("JPEG",),
}


class RefusedAsset(RgbAssetsError):
    """An asset the archive will not read or keep; the item is skipped with this reason."""

    def __init__(self, asset: str, href: str, problem: str) -> None:
        self.asset = asset
        self.href = href
        self.problem = problem
        super().__init__(f"asset {asset!r} ({href}): {problem}")


def resolved_roots(roots: Sequence[str]) -> tuple[str, ...]:
    return tuple(os.path.realpath(os.path.expanduser(r)) for r in roots if r)


def confine_href(href: str, roots: Sequence[str], asset: str = "asset") -> str:
    """The href to read: remote URLs unchanged, local ones as a resolved path inside a root.

    Raises :class:`RefusedAsset` for any other scheme (``ftp``, GDAL's ``/vsi...`` paths), a
    relative or ``..`` path, or a local file outside every root (symlinks resolved first).
    """
    parts = urlsplit(href)
    scheme = parts.scheme.lower()
    if scheme in REMOTE_SCHEMES:
        if not parts.netloc:
            raise RefusedAsset(asset, href, f"{scheme}:// URL without a host")
        return href
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RefusedAsset(asset, href, "file:// URL on another host")
        path = url2pathname(parts.path)
    elif scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        path = href
    else:
        raise RefusedAsset(asset, href, f"scheme {scheme}:// is not read (http(s), s3 or a file)")
    if path.startswith("/vsi"):
        raise RefusedAsset(asset, href, "GDAL virtual file paths are not read")
    if not os.path.isabs(path):
        raise RefusedAsset(asset, href, "relative path that no item location resolves")
    if ".." in Path(path).parts:
        raise RefusedAsset(asset, href, "path contains '..'")
    real = os.path.realpath(path)
    for root in resolved_roots(roots):
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return real
    allowed = ", ".join(resolved_roots(roots)) or "none configured"
    raise RefusedAsset(
        asset,
        href,
        f"local file outside the allowed roots ({allowed}); add its folder to "
        "RGB_ASSETS_ALLOWED_ROOTS to read it",
    )


def check_raster(path: str | Path, media_type: str | None, asset: str, href: str) -> str:
    """The GDAL driver of a copied file, which must be a raster of the claimed media type."""
    try:
        with rasterio.open(path) as src:
            driver, bands = src.driver, src.count
    except RasterioIOError:
        raise RefusedAsset(asset, href, "the bytes are not a raster GDAL can read") from None
    if bands < 1:
        raise RefusedAsset(asset, href, "the file holds no raster band")
    base = (media_type or "").split(";")[0].strip().lower()
    expected = MEDIA_DRIVERS.get(base)
    if expected is not None and driver not in expected:
        raise RefusedAsset(asset, href, f"claims {base} but the bytes are {driver}")
    return driver
