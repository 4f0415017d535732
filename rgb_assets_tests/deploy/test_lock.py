"""The image's locked install covers every runtime dependency the package declares.

The lock is compiled by hand (``uv pip compile pyproject.toml docker/stack.in ...``, see its
header); a dependency added to ``pyproject.toml`` without recompiling it would crash the
services that import it inside the image.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_lock_pins_every_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = (REPO / "docker" / "requirements.lock").read_text().lower()
    pinned = {m.group(1).replace("_", "-") for m in re.finditer(r"^([a-z0-9_.-]+)==", lock, re.M)}
    missing = sorted(n for n in map(_name, project["dependencies"]) if n not in pinned)
    assert not missing, f"recompile docker/requirements.lock: {missing} are not pinned"
