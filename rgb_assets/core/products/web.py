"""HTTP addresses of the products when the request service (``rgb-assets serve``) serves them.

One place for every URL the service answers, so STAC links, Dagster metadata and the REST
answers agree. The public base URL (``RGB_ASSETS_PUBLIC_URL``, read by ``rgb_assets.config``)
is where clients reach the service.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from rgb_assets.core.domain.months import Month

# Where `rgb-assets serve` listens by default: the map viewer links in Dagster point there when
# no public URL is configured.
DEFAULT_SERVICE_URL = "http://127.0.0.1:8080"
TILE_MATRIX_SET = "WebMercatorQuad"


def service_url(public_url: str | None) -> str:
    """The public URL when configured, else where ``rgb-assets serve`` listens by default."""
    return (public_url or DEFAULT_SERVICE_URL).rstrip("/")


def store_url(base: str, key: str) -> str:
    """A stored file (COG, thumbnail, STAC JSON) over HTTP: ``{base}/store/{key}``."""
    return f"{base.rstrip('/')}/store/{quote(key.strip('/'))}"


def viewer_url(base: str, aoi: str, month: Month | None = None) -> str:
    """The map viewer opened on an AOI (and a month)."""
    params = {"aoi": aoi} | ({"month": month.key} if month else {})
    return f"{base.rstrip('/')}/map?{urlencode(params)}"


def tile_url(base: str, aoi: str, month: Month, asset: str = "visual") -> str:
    """XYZ tile URL template of a composite (``{z}/{x}/{y}`` left for the client)."""
    query = urlencode({"aoi": aoi, "month": month.key, "asset": asset})
    return f"{base.rstrip('/')}/cog/tiles/{TILE_MATRIX_SET}/{{z}}/{{x}}/{{y}}.png?{query}"
