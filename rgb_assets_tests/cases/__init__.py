"""CI-only tests on real items and scenes kept outside the repository (``../shared/cases``).

They run only when ``RGB_ASSETS_CASES_DIR`` names that folder; otherwise ``conftest.py`` deselects
them, so ``make test`` stays self-contained on a user's machine.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "RGB_ASSETS_CASES_DIR"


def cases_dir() -> Path | None:
    """The real-world fixtures folder, or None when the environment does not provide one."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value) if value else None
