"""Where everything lives in the store: every key the pipeline reads or writes is built here.

Keys are ``/``-separated paths relative to the store root; they stay keys inside the pipeline
and become hrefs (relative or absolute) only when STAC is serialized.

```
aois/{aoi}.geojson                                   the AOI registry
aois-inbox/                                          AOI files the inbox sensor registers
requests/{id}.json                                   REST request records
raw/{collection}/{aoi}/{YYYY-MM}/items.json          the partition's archived items (manifest)
raw/{collection}/{aoi}/{YYYY-MM}/{scene}/            one archived scene: {scene}.json + assets
composites/{collection}/{aoi}/{YYYY-MM}/composite.json       the published product (sidecar)
composites/{collection}/{aoi}/{YYYY-MM}/{version}/           one product version:
    {base}.tif  {base}.zarr  {base}_visual.tif  {base}_thumbnail.png
catalogs/{raw|derived}/catalog.json                  static STAC catalogs
catalogs/{raw|derived}/{collection id}/{aoi}/{YYYY-MM}/{item}/{item}.json
```
"""

from __future__ import annotations

from dataclasses import dataclass

from rgb_assets.core.domain.months import Month

AOIS = "aois"
AOI_INBOX = "aois-inbox"
REQUESTS = "requests"
RAW_CATALOG = "catalogs/raw"
DERIVED_CATALOG = "catalogs/derived"
SIDECAR = "composite.json"


def aoi_key(name: str) -> str:
    return f"{AOIS}/{name}.geojson"


def request_key(request_id: str) -> str:
    return f"{REQUESTS}/{request_id}.json"


def catalog_root(prefix: str) -> str:
    return f"{prefix}/catalog.json"


def catalog_collection(prefix: str, collection_id: str) -> str:
    return f"{prefix}/{collection_id}/collection.json"


@dataclass(frozen=True)
class ProductPaths:
    """The files of one version of a composite product."""

    #: Folder of this version.
    folder: str
    #: Analysis COG: float32 reflectance bands plus the clear count.
    cog: str
    #: The same as a consolidated Zarr store.
    zarr: str
    #: 8-bit RGB COG for web maps.
    visual: str
    #: PNG thumbnail.
    thumbnail: str

    def files(self) -> dict[str, str]:
        """Role -> key, in the order they are published."""
        return {"cog": self.cog, "visual": self.visual, "thumbnail": self.thumbnail}


@dataclass(frozen=True)
class PartitionPaths:
    """Every store key of one collection × AOI × month partition."""

    collection: str
    aoi: str
    month: Month

    @property
    def raw(self) -> str:
        """Archived scenes of the partition: one folder per scene plus the manifest."""
        return f"raw/{self.collection}/{self.aoi}/{self.month.key}"

    @property
    def manifest(self) -> str:
        """The partition's ItemCollection of archived items, read by the later steps."""
        return f"{self.raw}/items.json"

    def scene_dir(self, scene_id: str) -> str:
        return f"{self.raw}/{scene_id}"

    def scene_item(self, scene_id: str) -> str:
        return f"{self.scene_dir(scene_id)}/{scene_id}.json"

    @property
    def composite(self) -> str:
        """Folder of the partition's composite: the sidecar and the product versions."""
        return f"composites/{self.collection}/{self.aoi}/{self.month.key}"

    @property
    def sidecar(self) -> str:
        """The published product: which version, its files, checksums and statistics."""
        return f"{self.composite}/{SIDECAR}"

    @property
    def basename(self) -> str:
        """File stem of the products, also the derived STAC item id."""
        return f"{self.aoi}_{self.month.key}_{self.collection}"

    def product(self, version: str) -> ProductPaths:
        folder = f"{self.composite}/{version}"
        stem = f"{folder}/{self.basename}"
        return ProductPaths(
            folder=folder,
            cog=f"{stem}.tif",
            zarr=f"{stem}.zarr",
            visual=f"{stem}_visual.tif",
            thumbnail=f"{stem}_thumbnail.png",
        )

    def catalog_partition(self, prefix: str, collection_id: str) -> str:
        """Folder of this partition's items in the static catalog under ``prefix``."""
        return f"{prefix}/{collection_id}/{self.aoi}/{self.month.key}"

    def catalog_item(self, prefix: str, collection_id: str, item_id: str) -> str:
        return f"{self.catalog_partition(prefix, collection_id)}/{item_id}/{item_id}.json"

    def raw_catalog_item_id(self, scene_id: str) -> str:
        """Id of an archived scene in the raw catalog: unique per AOI (clips differ per AOI)."""
        return f"{scene_id}__{self.aoi}"
