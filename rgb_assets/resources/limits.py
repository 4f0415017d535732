"""What one AOI or partition may cost, as a resource so every worker checks the run's limits."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from rgb_assets.core.domain.limits import Limits

_DEFAULTS = Limits()


class LimitsResource(ConfigurableResource):
    """:class:`rgb_assets.core.domain.limits.Limits` (settings ``RGB_ASSETS_MAX_*``)."""

    max_aoi_vertices: int = Field(default=_DEFAULTS.max_aoi_vertices, gt=0)
    max_aoi_area_km2: float = Field(default=_DEFAULTS.max_aoi_area_km2, gt=0)
    min_aoi_area_m2: float = Field(default=_DEFAULTS.min_aoi_area_m2, gt=0)
    max_output_pixels: int = Field(default=_DEFAULTS.max_output_pixels, gt=0)
    max_scenes: int = Field(default=_DEFAULTS.max_scenes, gt=0)
    max_toi_months: int = Field(default=_DEFAULTS.max_toi_months, gt=0)
    max_body_bytes: int = Field(default=_DEFAULTS.max_body_bytes, gt=0)

    @classmethod
    def of(cls, limits: Limits) -> LimitsResource:
        return cls(**vars(limits))

    def limits(self) -> Limits:
        return Limits(
            max_aoi_vertices=self.max_aoi_vertices,
            max_aoi_area_km2=self.max_aoi_area_km2,
            min_aoi_area_m2=self.min_aoi_area_m2,
            max_output_pixels=self.max_output_pixels,
            max_scenes=self.max_scenes,
            max_toi_months=self.max_toi_months,
            max_body_bytes=self.max_body_bytes,
        )
