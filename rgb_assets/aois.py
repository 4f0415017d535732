"""Register, list and remove AOIs: the registry file and the Dagster dynamic partition together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance

from rgb_assets.core.domain.aoi import Aoi, AoiRegistry
from rgb_assets.core.domain.limits import Limits
from rgb_assets.partitions import aoi_partitions


@dataclass
class AoiChange:
    aoi: str
    created: bool
    message: str


def register_aoi(
    registry: AoiRegistry,
    instance: DagsterInstance,
    name: Any,
    geometry: Any,
    *,
    replace: bool = False,
    limits: Limits | None = None,
) -> tuple[Aoi, AoiChange]:
    """Validate and store the geometry (within ``limits``), then add the dynamic partition
    (idempotent)."""
    aoi, created = registry.add(name, geometry, replace=replace, limits=limits)
    if not instance.has_dynamic_partition(aoi_partitions.name, aoi.name):
        instance.add_dynamic_partitions(aoi_partitions.name, [aoi.name])
    verb = "registered" if created else "already registered"
    return aoi, AoiChange(aoi.name, created, f"AOI {aoi.name!r} {verb}")


def remove_aoi(registry: AoiRegistry, instance: DagsterInstance, name: str) -> AoiChange:
    """Remove the AOI's partition and geometry; outputs already produced are kept."""
    existed = registry.remove(name)
    if instance.has_dynamic_partition(aoi_partitions.name, name):
        instance.delete_dynamic_partition(aoi_partitions.name, name)
        existed = True
    msg = (
        f"AOI {name!r} removed; composites and catalog entries already produced are kept"
        if existed
        else f"AOI {name!r} was not registered"
    )
    return AoiChange(name, False, msg)


def sync_partitions(registry: AoiRegistry, instance: DagsterInstance) -> list[str]:
    """Add a dynamic partition for every AOI in the registry that lacks one."""
    have = set(instance.get_dynamic_partitions(aoi_partitions.name))
    missing = [n for n in registry.names() if n not in have]
    if missing:
        instance.add_dynamic_partitions(aoi_partitions.name, missing)
    return missing
