"""Deselect (not skip) the ``cases`` tests when ``RGB_ASSETS_CASES_DIR`` is unset.

Deselection keeps a user's ``make test`` free of skips that look like missing coverage; CI sets the
variable, and then a wrong path is a usage error rather than a silently empty test run.
"""

from __future__ import annotations

import pytest

from rgb_assets_tests.cases import ENV_VAR, cases_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = cases_dir()
    if root is not None:
        expected = ("stac_real", "landsat_c2l2_scenes_downsampled")
        if not all((root / name).is_dir() for name in expected):
            raise pytest.UsageError(
                f"{ENV_VAR}={root} does not contain stac_real/ and landsat_c2l2_scenes_downsampled/"
            )
        return
    deselected = [item for item in items if item.get_closest_marker("cases") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("cases") is None]
