"""HTTP request API: submit AOI × time-of-interest requests that become Dagster partition runs."""

from rgb_assets.service.app import create_app

__all__ = ["create_app"]
