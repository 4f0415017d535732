"""CI-only: the official STAC JSON schemas held beside the project (never copied into it).

Tests here run when ``RGB_ASSETS_STAC_SCHEMAS_DIR`` points at the offline schema folder (CI sets
it); otherwise they are deselected so ``make test`` stays self-contained on any machine.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RGB_ASSETS_STAC_SCHEMAS_DIR"):
        return
    here = os.path.dirname(__file__)
    keep, drop = [], []
    for item in items:
        (drop if str(item.fspath).startswith(here) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
